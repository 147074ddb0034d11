// Package filewatch polls a file and hands its content over whenever it
// changed, for the policies that reload a file (authz and the server's
// policy file).
//
// Polling rather than inotify sees editors that replace a file by renaming
// and files behind symlinks that are swapped (Kubernetes ConfigMap
// volumes). A change is a new size, modification or change time, device
// or inode followed by different bytes: a file touched but not changed is
// not reported again, and a file that cannot be read is reported once
// until it changes again.
package filewatch

// Package sysinfo reports facts about the running kernel and process that
// decide which zerohop backends can work here: the kernel version, the
// capabilities in the effective set, RLIMIT_MEMLOCK, whether the kernel
// ships BTF, the kernel.io_uring_disabled sysctl and the seccomp mode.
//
// Every function reads the live system on each call (nothing is cached) and
// returns an error that names what it tried to read; a missing file for an
// optional sysctl is reported with an error satisfying
// errors.Is(err, fs.ErrNotExist). Nothing here needs privileges.
package sysinfo

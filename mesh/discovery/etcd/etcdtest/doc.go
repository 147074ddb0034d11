// Package etcdtest runs etcd for tests, on loopback, with a data directory
// under t.TempDir(), stopped in t.Cleanup even when the test fails:
//
//   - StartEmbedded runs etcd inside the test binary
//     (go.etcd.io/etcd/server/v3/embed), and can be stopped and started
//     again on the same data directory and ports;
//   - StartBinary runs Debian's etcd binary (package etcd-server, which
//     scripts/test installs) as a separate process, optionally inside a
//     network namespace through a command prefix such as
//     {"ip", "netns", "exec", NAME}.
//
// Ports are picked by the kernel: a listener on port 0 is opened and
// closed, and its port handed to etcd, which must bind it again; another
// process taking the port in between fails the start loudly, it does not
// hang.
package etcdtest

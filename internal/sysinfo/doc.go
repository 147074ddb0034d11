// Package sysinfo reports facts about the running kernel and process that
// decide which zerohop backends can work here: the kernel version, the
// capabilities in the effective set, RLIMIT_MEMLOCK, whether the kernel
// ships BTF, the kernel.io_uring_disabled sysctl and the seccomp mode; and
// for an interface its queue map (QueueMap): how many receive queues it
// has (ETHTOOL_GCHANNELS, else /sys/class/net/IF/queues/rx-*), each queue's
// own interrupt and the CPU that interrupt is affine to, the CPU a queue's
// loop should run on (that CPU, else queue mod the usable CPUs), and
// whether the interface is virtual (no device behind it: veth, bridge).
//
// Every function reads the live system on each call (nothing is cached) and
// returns an error that names what it tried to read; a missing file for an
// optional sysctl is reported with an error satisfying
// errors.Is(err, fs.ErrNotExist). Nothing here needs privileges.
//
// /sys shows the interfaces of the network namespace that mounted it, not
// of the calling thread's: a thread that entered another namespace with
// setns(2) sees that namespace's interfaces through ethtool (a socket of the
// thread's namespace) but not through /sys, and QueueMap then says so in
// its CountFrom and VirtualFrom fields. `ip netns exec` mounts a /sys of
// the namespace, so both views agree there. System holds the roots and the
// ethtool answers, so tests can use fake trees; Live is the real system.
package sysinfo

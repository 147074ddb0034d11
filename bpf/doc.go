// Package bpf owns zerohop's XDP steering program and its maps, loaded and
// attached through github.com/cilium/ebpf: one program per interface,
// shared by every zerohop server on it.
//
// # The program
//
// The program (steer.c, compiled by bpf2go into the committed steer_bpfe*.o)
// parses Ethernet, up to two VLAN tags, IPv4 with any header length or IPv6,
// and UDP, then per packet:
//
//   - an ACL rule for the source prefix and destination port (longest
//     prefix, port rules before any-port rules) that denies → XDP_DROP,
//     counted as ACLDropped and in the rule's own hit counter (ACLRules);
//   - an IP fragment of a UDP datagram → XDP_PASS, counted as Fragment (the
//     kernel reassembles it and a server's kernel socket can answer);
//   - a registered Service for the destination port (and address) whose
//     server is alive → the AF_XDP socket that server registered for the
//     receive queue (Redirected); with no socket of that server on the
//     queue → XDP_PASS, NoSocket; a server that stopped heartbeating →
//     XDP_PASS, Stale; longer than the service's MaxLen → XDP_PASS,
//     Oversize. Each of these is also counted per server (SlotCounters);
//   - for a service flagged ServiceRequireSealed (a server requiring
//     sealed frames), a GWIR REQUEST without the SEALED flag → XDP_DROP,
//     counted as UnsealedDropped, before any of the above reaches a
//     socket;
//   - anything else (ARP, ICMP, TCP, other ports, truncated frames) →
//     XDP_PASS, so the kernel keeps working; truncated frames also count as
//     Malformed.
//
// So a datagram for a served port is never dropped for want of a socket:
// it goes to the kernel, where the server's kernel sockets on the same
// address (the runtime's hybrid path) answer it. The ACL covers UDP only.
// IPv6 extension headers are walked (up to four) so they cannot hide the
// port; non-first fragments and deeper header chains are checked against
// the any-port rules only.
//
// # Sharing one program
//
// Join attaches the program to an interface or joins the one attached.
// Servers are independent processes, possibly started from separate mount
// namespaces (each `ip netns exec` has its own /sys and bpffs), so they
// never meet through pins. They meet through the interface and ids:
//
//   - rtnetlink (in the caller's network namespace) names the program
//     attached to the interface and its mode; Join opens it by id and
//     checks that it is zerohop's: name "zerohop_steer", a frozen
//     read-only meta map holding magic, ABIVersion and the dimensions, and
//     every map of the expected type, key, value, size and flags. Anything
//     else attached fails with ErrForeign naming it (name, id, mode);
//     zerohop never replaces or detaches another program. A zerohop
//     program of another ABI version fails with ErrIncompatible.
//   - The program is attached through a bpf_link, and every server holds a
//     descriptor of that link (opened by id). The kernel keeps the program
//     attached while any descriptor is open and detaches it when the last
//     one closes, whether its server called Close or was killed with
//     SIGKILL: when the last server is gone, the interface has no XDP
//     program, within the time the kernel takes to close the dead
//     process's descriptors. Nothing is left that alters its traffic.
//   - Races are retried: two servers attaching at once (the second gets
//     EBUSY and joins the first's program), the last holder leaving while
//     another joins (the link is gone by the time it is opened, or the
//     program is detached right after: Join starts over).
//
// ABI rule: a server joins only a program whose meta map holds exactly its
// ABIVersion; any change of a map, a layout or a meaning increments it. One
// interface therefore runs one zerohop ABI at a time (see ABIVersion).
//
// # Servers, slots and liveness
//
// Each server claims a slot (0..MaxSlots-1) for its life and a random owner
// token. Its services carry slot and token; its AF_XDP sockets sit at XSKMAP
// index slot*MaxQueues + queue. Slots and the registry (claiming a slot,
// adding, removing and sweeping services) are guarded by abstract unix
// socket names, which are scoped to the network namespace (where all
// servers of an interface are) rather than the mount namespace, and which
// the kernel frees the moment their holder dies.
//
// The program steers a service's packets only while its slot holds the
// service's token and a heartbeat within StaleAfter (1 s) of
// bpf_ktime_get_coarse_ns, so a server that is killed, hung or stopped stops being
// steered within StaleAfter without anyone's help; one that dies also loses
// its sockets at once (the kernel removes a closed AF_XDP socket from the
// XSKMAP), so its packets go to the kernel as NoSocket even before that.
// The heartbeat clock is CLOCK_MONOTONIC_COARSE as the kernel sees it: a
// server in a time namespace (unshare -T, some container runtimes) reads it
// shifted, which Heartbeat corrects by the offset in
// /proc/self/timens_offsets. A Program heartbeats from a goroutine of its
// own by default (Options.HeartbeatInterval) and sweeps about once a
// second: Sweep deletes the services of servers that are gone. A new
// server takes over a service whose server is gone or stale at once; while
// its server is alive and heartbeating, the same port and address, or the
// port's any-address service against one of its addresses, is
// ErrAddrInUse (matching unix.EADDRINUSE). Two servers never share a port.
//
// Queues are not shared either, and cannot be: the kernel allows one UMEM
// per (interface, queue), so a second process's AF_XDP bind of a queue
// another server holds fails with EBUSY. Servers of one interface divide
// its queues (each slot publishes the queues it holds: QueuesOfOthers); a
// service's packets on a queue another server holds go to the kernel
// (NoSocket). On a NIC, an ntuple rule (ethtool -N IF flow-type
// udp4 dst-port P action Q) sends a service's port to its own server's
// queues.
//
// # Other handles
//
// Inspect reports what is attached to an interface (nothing, zerohop's
// program with its servers, services and counters, or a foreign one);
// OpenAttached opens the maps of the attached program by id from any mount
// namespace (for the CLI). With Options.Pin the maps are also pinned under
// /sys/fs/bpf/zerohop/<iface>/ for OpenPinned in the same mount namespace,
// and unpinned by the last server that pinned them; pin names come from the
// interface name only, so two namespaces pinning the same interface name
// on one host collide (ErrBusy). ProbeAttach tries a fresh, exclusive
// attach and never touches a program that is attached.
//
// The node table (OpenNodeTable) is a second kind of shared map, one per
// host rather than per interface: the services of every server on the node,
// with versions, weights and health, for node-local discovery; its comment
// says how it is found and what its limits are.
//
// # Errors and permissions
//
// Go does no per-packet work here: every method is a few map syscalls,
// safe for concurrent use, and returns no buffers that outlive the call.
// Errors are *Error values naming the operation and interface, wrapping one
// of the sentinels (ErrNotFound, ErrExists, ErrFull, ErrInvalid, ErrBusy,
// ErrNotSupported, ErrClosed, ErrForeign, ErrIncompatible, ErrAddrInUse,
// ErrTakenOver) and the kernel's errno where there is one.
//
// Loading needs CAP_BPF and CAP_NET_ADMIN; joining, inspecting and the
// node table open programs, maps and links by id, which needs
// CAP_SYS_ADMIN (root). SetLoss is a test knob that drops every n-th
// service packet; it is off unless set.
package bpf

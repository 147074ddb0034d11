// Package bpf owns zerohop's XDP steering program and its maps, loaded and
// attached through github.com/cilium/ebpf.
//
// The program (steer.c, compiled by bpf2go into the committed steer_bpfe*.o)
// parses Ethernet, up to two VLAN tags, IPv4 with any header length or IPv6,
// and UDP, then per packet:
//
//   - an ACL rule for the source prefix and destination port (longest
//     prefix, port rules before any-port rules) that denies → XDP_DROP,
//     counted as ACLDropped;
//   - a registered Service for the destination port (and address) → the
//     AF_XDP socket registered with SetSocket for the receive queue; with no
//     socket there → XDP_PASS, counted as NoSocket;
//   - anything else (ARP, ICMP, TCP, other ports, IP fragments, truncated
//     frames) → XDP_PASS, so the kernel keeps working; truncated frames also
//     count as Malformed.
//
// The ACL covers UDP only. IPv6 extension headers are walked (up to four)
// so they cannot hide the port; non-first fragments and deeper header
// chains are checked against the any-port rules only. Fragments and
// first fragments always go to the kernel (it reassembles), never to a
// socket.
//
// Attach loads and attaches the program to one interface (native mode,
// generic as fallback; Program.Mode says which) through a bpf_link, so a
// crashed process leaves nothing attached. With Options.Pin the maps are
// pinned under /sys/fs/bpf/zerohop/<iface>/ for OpenPinned (the CLI), and
// unpinned by Close. Pin names come from the interface name only, so two
// namespaces pinning the same interface name on one host collide (ErrBusy).
//
// Go does no per-packet work here: every method is a few map syscalls, safe
// for concurrent use, and returns no buffers that outlive the call.
//
// Errors are *Error values naming the operation and interface, wrapping one
// of the sentinels (ErrNotFound, ErrExists, ErrFull, ErrInvalid, ErrBusy,
// ErrNotSupported, ErrClosed) and the kernel's errno where there is one.
//
// Loading needs CAP_BPF and CAP_NET_ADMIN (root). SetLoss is a test knob that
// drops every n-th service packet; it is off unless set.
package bpf

// Package xskpath is the server's AF_XDP path: its hold on the
// interface's shared steering program (bpf.Join), one UMEM, and one
// engine.Source per AF_XDP socket, each bound to one RX queue.
//
// Lifecycle: Join (slot in the program; fails wrapping bpf.ErrAddrInUse
// when another live server steers the port), TakenQueues (what other
// servers hold: AF_XDP allows one process per queue), Open (UMEM and
// sockets, registered in the slot, nothing steered), the loops' Setup
// (fill rings full), Steer (the port goes to the sockets), and on stop
// Unsteer first (the port goes to the kernel, where the server's kernel
// sockets answer it), the loops stop, Close (slot, then sockets and UMEM;
// the kernel detaches the program when its last server's link closes).
// The program handle heartbeats the slot from its own goroutine; a server
// that stops heartbeating stops being steered within bpf.StaleAfter.
//
// A Socket parses each frame in place (netstack.Parser, accepting the
// CHECKSUM_PARTIAL pattern only when Config says the interface is
// virtual, counted in LoopCounters.PartialChecksum), dispatches it, and
// sends the reply from the same UMEM frame; a blocking request's frame is
// released at once and its reply built in a fresh frame, so no handler
// can hold the UMEM. Every drop is counted by reason through
// engine.Warnings. Nothing on the per-frame path allocates.
package xskpath

// Package xsk drives AF_XDP sockets: a UMEM of packet frames, the four
// rings (fill, RX, TX, completion) shared with the kernel, need_wakeup,
// zero-copy or copy binding, one UMEM shared by the sockets of several
// queues, O(1) frame allocation with exact accounting, and the kernel's
// per-socket statistics.
//
// Contract. NewUMEM maps the frames; (*UMEM).Open binds a Socket to one
// interface queue and gives it its own disjoint range of frames with its
// own free stack, so the sockets of different queues share no lock and
// no frame. A Socket is driven by one goroutine (one event loop): Refill
// feeds free frames to the fill ring, Receive takes packets, Transmit posts
// frames (received ones included, for replies in place), Kick wakes the
// kernel's TX, ReapCompletions returns sent frames to the free stack. The
// batch methods take caller-provided slices and do not allocate. Every
// frame is in exactly one place (free, fill, RX, user, TX, completion);
// CheckAccounting verifies it.
//
// Buffers. Frame and Packet return slices into the UMEM. They stay valid
// while the caller owns the frame: from Receive or Alloc until the frame
// is passed to Transmit or Release (or the socket is closed).
//
// Errors. Setup errors wrap the failing syscall's errno and name the
// operation and queue; ErrNotSupported marks what this kernel or device
// cannot do. On the data path nothing fails: "try later" answers of the
// kernel (EAGAIN, EBUSY, ENOBUFS, ENETDOWN on a kick) are counted in
// Counters, and frames handed over from the wrong place are counted as
// accounting violations instead of corrupting the free stack.
//
// This package does not parse packets and does not load XDP programs; a
// socket's FD goes into a BPF_MAP_TYPE_XSKMAP keyed by its Queue (see
// Register).
package xsk

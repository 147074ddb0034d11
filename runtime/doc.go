// Package runtime serves GWIR requests from pinned per-core event loops and
// calls them as a client.
//
// A Server is made by Listen, given handlers with Handle (run on the event
// loop; must not block) or HandleBlocking (run on a bounded worker pool),
// and run with Serve or Start/Shutdown. It runs on one of two backends and
// always says which (Backend, BackendReason, the start-up log line):
//
//   - BackendXSK: the bpf package's XDP program, shared by every zerohop
//     server of the interface, steers the listen port to one AF_XDP socket
//     per served RX queue, all sharing one UMEM. By default every queue no
//     other server holds is served (AF_XDP allows one process per queue),
//     each queue's loop on the CPU its interrupt is affine to (queue mod
//     NumCPU without per-queue interrupts); queues of one core share a
//     loop. Each loop, on a locked OS thread pinned to its core, spins on
//     its rings while busy (WithBusyPoll) and sleeps in its io_uring
//     otherwise. A request is parsed in place in the frame it arrived in
//     and the reply is built and sent from that same frame. Beside the
//     sockets, kernel sockets on the same address (the hybrid path) answer
//     what never reaches them: callers in the server's namespace, IP
//     fragments and oversized datagrams, datagrams on queues it does not
//     serve, TCP. Needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN), an
//     interface that takes XDP, an explicit port.
//   - BackendUring: one SO_REUSEPORT UDP socket per loop, multishot RECVMSG
//     into a provided-buffer ring, one SENDMSG per reply, all through the
//     loop's io_uring. Works unprivileged; datagrams up to 8 KiB.
//
// BackendAuto picks XSK when it can attach and bind on the interface holding
// the listen address (or WithInterface), and io_uring sockets otherwise,
// logging the cause at WARN. Both serve UDP, and TCP with WithTCP. A second
// server on an address fails with ErrAddrInUse unless both gave
// WithReusePort. Stats counts which path served each request.
//
// Request path contract: a handler gets a *Request whose Payload and Fields
// alias the receive buffer (the UMEM frame on XSK) and are valid only until
// the handler returns; its *Response writes straight into the reply buffer
// and is bounded by one datagram (the MTU on XSK): a write that does not fit
// fails with ErrTooLarge and the caller gets status TOO_LARGE, never a
// truncated reply. Nothing on this path allocates.
//
// Protocol policy (docs/protocol.md): input shorter than a header, with the
// wrong magic or version, or a RESPONSE/PONG, is dropped and counted; a
// request with a bad field is answered BAD_FRAME; an unknown method
// UNKNOWN_METHOD; a panicking handler INTERNAL (the loop keeps serving and
// the panic is logged once per method); a full worker pool OVERLOADED. PING
// is answered PONG, status 1 while draining.
//
// Sealed frames (WithSealer on a server, WithClientSealer on a Client;
// sealer.go): a sealer the mesh provides (mesh/identity) authenticates
// and encrypts frames in place; a sealed request is opened before
// dispatch and carries its peer's identity (Request.Identity), its reply
// is sealed in the reply buffer, a frame that does not open is dropped
// (Dropped["sealed"]) and never answered, and a strict server answers
// unsealed requests DENIED before any handler.
//
// Shutdown drains: PINGs say draining, new requests get OVERLOADED, blocking
// handlers already running finish until the context ends; then the loops
// stop and every ring, socket, XDP attachment and pinned map is released.
package runtime

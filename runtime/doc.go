// Package runtime serves GWIR requests from pinned per-core event loops and
// calls them from a process-wide client engine. It is zerohop's public
// API; the loops, paths and engine live in runtime/internal, and the mesh
// (mesh/...) plugs in through the interfaces defined here — runtime never
// imports it.
//
// # Serving
//
// A Server is made by Listen, given handlers with Handle (run on the event
// loop; must not block) or HandleBlocking (run on a bounded worker pool),
// and run with Serve or Start/Shutdown. It runs on one of two backends and
// always says which (Backend, BackendReason, the start-up log line):
//
//   - BackendXSK, linked in by importing runtime/xdp: the bpf package's
//     XDP program, shared by every zerohop server of the interface, steers
//     the listen port to one AF_XDP socket per served RX queue, all sharing
//     one UMEM. By default every queue no other server holds is served
//     (AF_XDP allows one process per queue), each queue's loop on the CPU
//     its interrupt is affine to (queue mod NumCPU without per-queue
//     interrupts); queues of one core share a loop. Each loop, on a locked
//     OS thread pinned to its core, spins on its rings while busy
//     (WithBusyPoll) and sleeps in its io_uring otherwise. A request is
//     parsed in place in the frame it arrived in and the reply is built and
//     sent from that same frame. Beside the sockets, kernel sockets on the
//     same address (the hybrid path) answer what never reaches them:
//     callers in the server's namespace, IP fragments and oversized
//     datagrams, datagrams on queues it does not serve, TCP. Needs root
//     (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN), an interface that takes
//     XDP, an explicit port.
//   - BackendUring: one SO_REUSEPORT UDP socket per loop, multishot RECVMSG
//     into a provided-buffer ring, one SENDMSG per reply, all through the
//     loop's io_uring. Works unprivileged; datagrams up to 8 KiB.
//
// BackendAuto picks XSK when runtime/xdp is linked in and it can attach and
// bind on the interface holding the listen address (or WithInterface), and
// io_uring sockets otherwise, logging the cause at WARN. Both serve UDP,
// and TCP with WithTCP. A second server on an address fails with
// ErrAddrInUse unless both gave WithReusePort. Stats counts which path
// served each request, per loop, per queue and per method.
//
// Handlers see the request's extension block (docs/protocol.md): Deadline
// (the caller's budget from its arrival; an expired one is answered
// DEADLINE_EXCEEDED without running the handler, on arrival or when a
// worker picks it up), Trace, Caller, Attempt and application tags; replies
// to callers that spoke EXT carry SERVICE_TIME and, when set, RETRY_AFTER.
// Middleware wraps every method's handler where it runs (WithMiddleware);
// admission middleware runs on the loop before a request is handled or
// queued (WithAdmission) — rate limits, shedding and authorization
// (mesh/policy) refuse work there. Both chains are built once per method:
// the request path stays allocation-free.
//
// Request path contract: a handler gets a *Request whose Payload, Fields
// and every other slice alias the receive buffer (the UMEM frame on XSK)
// and are valid only until the handler returns; copy what must outlive it
// (AppendPayload). A handler that keeps one sees the bytes of later
// requests — or, once the server is shut down and the memory unmapped, a
// segmentation fault; WithPoisonedBuffers turns both into deterministic
// garbage (0xDB) for tests. Its *Response writes straight into the reply
// buffer and is bounded by one datagram (the MTU on XSK): a write that does
// not fit fails with ErrTooLarge and the caller gets status TOO_LARGE,
// never a truncated reply. Nothing on this path allocates.
//
// Protocol policy (docs/protocol.md): input shorter than a header, with the
// wrong magic or version, or a RESPONSE/PONG, is dropped and counted (and
// logged at WARN the first time per reason); a request with a bad field
// is answered BAD_FRAME; an unknown method UNKNOWN_METHOD; a panicking
// handler INTERNAL (the loop keeps serving and the panic is logged once per
// method); a full worker pool OVERLOADED. PING is answered PONG, status 1
// while draining.
//
// Sealed frames (WithSealer on a server, WithClientSealer on a Client;
// sealer.go): a sealer the mesh provides (mesh/identity) authenticates
// and encrypts frames in place; a sealed request is opened before
// dispatch and carries its peer's identity (Request.Identity), its reply
// is sealed in the reply buffer, a frame that does not open is dropped
// (Dropped["sealed"]) and never answered, and a strict server answers
// unsealed requests DENIED before any handler.
//
// Shutdown withdraws the server's registration (WithRegistry), stops the
// port's AF_XDP steering (its datagrams then reach the same loops through
// the kernel sockets) and drains: PINGs say draining, new requests get
// OVERLOADED, blocking handlers already running finish until the context
// ends and queued ones that have not started never will (Stats.Abandoned);
// then the loops stop and every ring, socket, XDP attachment and pinned
// map is released. Serve takes its grace period from WithShutdownGrace.
//
// # Calling
//
// Dial returns a Client for one server address, DialService one for a
// service whose endpoints a ResolverBuilder reports (mesh/discovery) and a
// Balancer picks per attempt (mesh/balance; round robin by default). Both
// are handles on an Engine: a few pinned loops (one by default) that own
// io_uring rings and unconnected UDP sockets and multiplex every endpoint
// the process calls — an endpoint is a table entry with its RTT estimate
// and counters, not a thread or a socket. Dial uses the default engine of
// the caller's network namespace. Call waits for the reply (copied into
// the caller's buffer: no allocation), Go keeps many calls in flight
// (completions never block the loop, whatever the caller does with Done),
// Oneway sends and forgets, Ping asks serving or draining. Requests carry
// ATTEMPT, the context's DEADLINE and CALLER (WithCaller); a server that
// refuses the extension block gets the call again without it. Delivery is
// at least once: a request without a reply is resent after a timeout
// derived from the endpoint's measured RTT; an ICMP port unreachable ends
// a call at once; a DialService call fails over to another endpoint within
// its deadline and a retry budget. Interceptors (mesh/policy's circuit
// breaker) see every attempt.
//
// Errors: calls fail with a *StatusError for an answer other than OK
// (StatusOf reads its status), ErrClientClosed, or a *CallError naming the
// endpoint, the method, the attempts and the cause (ErrNoReply, a
// context's error, a socket error, ErrNoEndpoints, an interceptor's
// refusal) for no answer at all.
package runtime

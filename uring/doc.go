// Package uring is zerohop's io_uring binding, written directly on
// golang.org/x/sys/unix: ring setup, the submission and completion queues,
// SQE preparation for the operations zerohop uses, provided-buffer rings,
// fixed files and an opcode/feature probe. It knows nothing about XDP,
// frames or handlers.
//
// # The event-loop pattern
//
// One Ring per event loop, on a locked OS thread (runtime.LockOSThread
// before New): SingleIssuer and DeferTaskrun rings must be created and
// entered on one thread. A pass prepares SQEs (Prep*; e.g. a SENDMSG TX kick
// with SQECQESkipSuccess), then one SubmitAndWait submits them and waits for
// at least one completion with a timeout in the same io_uring_enter, then
// Reap copies the completions into the caller's slice. None of these
// allocate.
//
// A Ring is not safe for concurrent use; the one exception is MSG_RING:
// another ring, on another thread, may post CQEs to it (PrepMsgRing with
// Fd).
//
// # Memory and lifetimes
//
// user_data is the caller's: make it an index into a table, never a
// pointer. Memory an SQE points at (buffers, msghdrs, sockaddrs) must stay
// untouched until the operation's last CQE; the ring keeps it reachable
// only until the kernel consumed the SQE. CQEs returned by Reap are copies
// and stay valid as long as the caller's slice. A provided buffer delivered
// by a CQE is the caller's until BufferRing.Recycle. Close cancels every
// in-flight request and waits for the cancellations before unmapping
// anything, so nothing the kernel writes can land in freed memory.
//
// # Errors
//
// New returns a *SetupError whose Hint names the likely cause
// (kernel.io_uring_disabled, seccomp, RLIMIT_MEMLOCK, a flag too new for
// this kernel). Submission restarts after EINTR and, on EBUSY/EAGAIN, reaps
// completions into a backlog (returned first by Reap) and retries; other
// io_uring_enter errors are returned wrapped, naming the call. A CQE carries
// its operation's result: CQE.Err gives the errno (a unix.Errno for
// errors.Is); CQE.NoBuffers means a provided-buffer group ran dry and, for
// a multishot request, that it ended and must be re-armed after recycling
// buffers. Errors wrapping ErrNotSupported mean the kernel lacks a feature;
// Probe and the Have* functions say which, naming the first kernel with it.
package uring

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
// pointer. Memory an SQE points at (buffers, msghdrs, iovecs through their
// msghdr, sockaddrs) must stay untouched until the operation's last CQE —
// for a multishot request the first CQE without CQEFMore — and the ring
// keeps it reachable until then, not merely until its SQ slot is reused.
// The ring finds that CQE by user data, so user data that another ring
// posts here through MSG_RING must not equal that of this ring's own
// operations that hold memory. An operation given SQECQESkipSuccess posts
// no CQE when it succeeds, so nothing says when the kernel is done with
// its memory: the ring keeps that memory until Close (once per distinct
// buffer and user data, so a TX kick repeated with one msghdr holds one
// reference), and the caller must treat it as in use until Close too; use
// skip-success only where the kernel is done with the memory at
// submission, like the empty msghdr of a kick. CQEs returned by Reap are
// copies and stay valid as long as the caller's slice. A provided buffer
// delivered by a CQE is the caller's until BufferRing.Recycle.
//
// Close cancels every in-flight request and waits until the kernel is done
// with their memory (every operation holding memory reaped to its last
// CQE) before unmapping or letting go of anything. A SingleIssuer ring can
// only do that on its own thread: from another one, with such operations
// in flight, Close returns ErrWrongThread and keeps everything, so a later
// Close on the right thread succeeds. BufferRing.Close likewise refuses
// (ErrInFlight) while a receive still picks from its group.
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

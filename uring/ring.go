package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

// Ring is one io_uring instance: a submission queue (SQ) we fill and the
// kernel consumes, and a completion queue (CQ) the kernel fills and we
// consume.
//
// A Ring is not safe for concurrent use. With SingleIssuer or DeferTaskrun
// it must also be created, entered and closed on one OS thread (call
// runtime.LockOSThread first); the kernel answers EEXIST otherwise, and
// Close on another thread returns ErrWrongThread. The one thing other
// threads may do is post to it through MSG_RING from their own ring, using
// Fd.
type Ring struct {
	fd         int
	setupFlags uint32
	features   uint32
	// keepBuffers: Close poisons provided buffers and leaves them mapped
	// (KeepBuffersMapped).
	keepBuffers bool

	sq submissionQueue
	cq completionQueue

	// keep holds, per SQ slot, the Go memory a prepared but not yet
	// published SQE points at; flush moves it into inflight, which keeps it
	// reachable (and the compiler puts it on the heap) until the
	// operation's last CQE.
	keep     []any
	inflight inflight
	// ownerTid is the thread that created a SingleIssuer ring: the only
	// one the kernel lets cancel and reap its requests (0: any thread).
	ownerTid int
	// closeHook, set only by tests, sees every CQE Close reaps.
	closeHook func(CQE)
	// timespecs holds, per SQ slot, the timespec of a TIMEOUT or
	// LINK_TIMEOUT; the kernel copies it while consuming the SQE.
	timespecs []unix.Timespec

	// backlog holds CQEs reaped off the CQ to make room when the kernel
	// answered EBUSY/EAGAIN; Reap hands them out first, in order.
	backlog                  []CQE
	backlogHead, backlogTail uint32

	// waitTimeout and waitArg are the io_uring_getevents_arg (and the
	// timespec it points at) for timed waits; they live here so a wait
	// does not allocate.
	waitTimeout unix.Timespec
	waitArg     getEventsArg

	bufferRings []*BufferRing
	mappings    [][]byte
}

// submissionQueue is our view of the SQ ring.
type submissionQueue struct {
	khead     *atomic.Uint32 // the kernel writes it as it consumes SQEs; we only load it
	ktail     *atomic.Uint32 // only we write it: stores publish SQEs to the kernel
	kflags    *atomic.Uint32 // the kernel writes it (NEED_WAKEUP, CQ_OVERFLOW, TASKRUN)
	kdropped  *atomic.Uint32 // the kernel counts invalid SQEs here
	array     []uint32       // index array (nil with NO_SQARRAY); identity mapping
	sqes      []SQE
	mask      uint32
	entries   uint32
	head      uint32 // last khead we loaded
	tail      uint32 // next free slot; published to ktail by flush
	published uint32 // the tail flush last stored into ktail
}

// completionQueue is our view of the CQ ring.
type completionQueue struct {
	khead     *atomic.Uint32 // only we write it: stores release consumed CQEs
	ktail     *atomic.Uint32 // the kernel writes it as it posts CQEs; we only load it
	koverflow *atomic.Uint32 // the kernel counts CQEs it had to drop (without FEAT_NODROP)
	cqes      []CQE
	mask      uint32
	entries   uint32
	head      uint32 // our copy of khead
}

type getEventsArg struct {
	sigmask     uint64
	sigmaskSize uint32
	minWaitUsec uint32
	ts          uint64
}

// Option configures New.
type Option func(*config)

type config struct {
	flags        uint32
	cqEntries    uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
}

// WithCQEntries sizes the CQ (default: twice the SQ). Size it for the most
// completions that can be pending at once, multishot requests included.
func WithCQEntries(n uint32) Option {
	return func(c *config) { c.flags |= setupCQSize; c.cqEntries = n }
}

// WithSingleIssuer promises that only one thread submits (Linux 6.0).
func WithSingleIssuer() Option { return func(c *config) { c.flags |= setupSingleIssuer } }

// WithDeferTaskrun defers completion work until the ring is entered to wait
// for events, so completions never interrupt the loop (Linux 6.1). Implies
// WithSingleIssuer. Completions then appear only after SubmitAndWait.
func WithDeferTaskrun() Option {
	return func(c *config) { c.flags |= setupSingleIssuer | setupDeferTaskrun }
}

// WithCoopTaskrun lets completion work wait for the next kernel entry
// instead of interrupting the thread with an IPI (Linux 5.19).
func WithCoopTaskrun() Option { return func(c *config) { c.flags |= setupCoopTaskrun } }

// WithSQPoll starts a kernel thread that polls the SQ, sleeping after idle
// without work; cpu ≥ 0 pins it to that CPU. Give it a core of its own.
// Not compatible with DeferTaskrun.
func WithSQPoll(idle time.Duration, cpu int) Option {
	return func(c *config) {
		c.flags |= setupSQPoll
		c.sqThreadIdle = uint32(idle / time.Millisecond)
		if cpu >= 0 {
			c.flags |= setupSQAff
			c.sqThreadCPU = uint32(cpu)
		}
	}
}

// optionalSetupFlags are added when the kernel knows them and silently
// dropped when it does not.
var optionalSetupFlags = []uint32{setupNoSQArray, setupSubmitAll}

// noSQArrayRefused remembers that a NO_SQARRAY setup failed with EINVAL, so
// later rings skip the attempt.
var noSQArrayRefused atomic.Bool

// New sets up a ring with entries SQ entries (a power of two, 1..32768).
// The ring always asks for SUBMIT_ALL (a failing SQE does not stop the
// batch) and, where supported (6.6), NO_SQARRAY. Errors are *SetupError,
// whose Hint names the likely cause (kernel.io_uring_disabled, seccomp,
// RLIMIT_MEMLOCK, a flag this kernel does not know).
func New(entries uint32, opts ...Option) (*Ring, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	optional := setupSubmitAll
	if !noSQArrayRefused.Load() {
		optional |= setupNoSQArray
	}
	retried := false
	for {
		r, err := setup(entries, &cfg, cfg.flags|uint32(optional))
		if err == nil {
			if retried && r.setupFlags&setupSubmitAll != 0 {
				// Only NO_SQARRAY was refused: do not try it again.
				noSQArrayRefused.Store(true)
			}
			return r, nil
		}
		if !errors.Is(err, unix.EINVAL) || optional == 0 {
			return nil, err // the last attempt's flags are the caller's own
		}
		retried = true
		// Drop the optional flags one at a time, newest first.
		if optional&setupNoSQArray != 0 {
			optional &^= setupNoSQArray
		} else {
			optional = 0
		}
	}
}

// KeepBuffersMapped is for debugging buffer lifetimes: when the ring
// closes, the memory of its provided-buffer rings is overwritten with
// PoisonByte and left mapped until the process exits, so code that kept a
// slice of a received buffer reads garbage instead of faulting. It leaks
// that memory by design; call it on the ring's thread before Close.
func (r *Ring) KeepBuffersMapped() { r.keepBuffers = true }

// PoisonByte fills the buffers KeepBuffersMapped leaves behind.
const PoisonByte = 0xDB

// Fd returns the ring's file descriptor, the target for MSG_RING.
func (r *Ring) Fd() int { return r.fd }

// Features returns the IORING_FEAT_* bits the kernel reported at setup.
func (r *Ring) Features() uint32 { return r.features }

// SetupFlags returns the IORING_SETUP_* flags the ring was created with.
func (r *Ring) SetupFlags() uint32 { return r.setupFlags }

// SQEntries and CQEntries return the ring sizes.
func (r *Ring) SQEntries() uint32 { return r.sq.entries }

// CQEntries returns the CQ size.
func (r *Ring) CQEntries() uint32 { return r.cq.entries }

// SQSpace returns how many SQEs can be prepared before GetSQE must submit.
func (r *Ring) SQSpace() uint32 {
	r.sq.head = r.sq.khead.Load()
	return r.sq.entries - (r.sq.tail - r.sq.head)
}

// Dropped returns how many SQEs the kernel dropped as invalid.
func (r *Ring) Dropped() uint32 { return r.sq.kdropped.Load() }

// GetSQE reserves the next SQE, zeroed, for the caller to fill. When the SQ
// is full it first submits what is queued (and, if the kernel pushes back
// with EBUSY/EAGAIN, reaps completions into a backlog that Reap returns
// first) and then retries.
func (r *Ring) GetSQE() (*SQE, error) {
	if r.sq.tail-r.sq.head >= r.sq.entries {
		if err := r.Reserve(1); err != nil {
			return nil, err
		}
	}
	sqe := &r.sq.sqes[r.sq.tail&r.sq.mask]
	*sqe = SQE{}
	r.sq.tail++
	return sqe, nil
}

// Reserve makes room for n SQEs, submitting queued ones if needed, so the
// next n GetSQE calls do not submit. Use it before preparing a linked chain
// (SQEIOLink), which must reach the kernel in one submission.
func (r *Ring) Reserve(n uint32) error {
	if r.fd < 0 {
		return ErrClosed
	}
	if n > r.sq.entries {
		return fmt.Errorf("io_uring: reserve %d SQEs: the SQ has only %d entries", n, r.sq.entries)
	}
	for {
		if r.sq.entries-(r.sq.tail-r.sq.head) >= n {
			return nil
		}
		r.sq.head = r.sq.khead.Load()
		if r.sq.entries-(r.sq.tail-r.sq.head) >= n {
			return nil
		}
		if r.setupFlags&setupSQPoll != 0 {
			// The poller consumes asynchronously: publish, wake it
			// if it sleeps, and wait until it made room.
			r.flush()
			if _, err := r.enter(0, 0, enterSQWait|r.sqWakeupFlag(), false); err != nil {
				return err
			}
			continue
		}
		if _, err := r.Submit(); err != nil {
			return err
		}
	}
}

// flush publishes the prepared SQEs to the kernel (release store of the
// tail; the SQE contents were written before it) and returns how many SQEs
// the kernel has yet to consume. Before that it records every operation
// that holds memory, reading the SQE as the caller left it: its final
// UserData and Flags decide which CQE ends it (SQECQESkipSuccess pins it).
func (r *Ring) flush() uint32 {
	for s := r.sq.published; s != r.sq.tail; s++ {
		slot := s & r.sq.mask
		sqe := &r.sq.sqes[slot]
		ref := r.keep[slot]
		selects := sqe.Flags&SQEBufferSelect != 0
		if ref == nil && !selects {
			continue
		}
		group := int32(-1)
		if selects {
			group = int32(sqe.BufIndex)
		}
		r.inflight.add(sqe.UserData, ref, group, sqe.Flags&SQECQESkipSuccess != 0)
		r.keep[slot] = nil
	}
	r.sq.published = r.sq.tail
	r.sq.ktail.Store(r.sq.tail)
	return r.sq.tail - r.sq.khead.Load()
}

func (r *Ring) sqWakeupFlag() uint32 {
	if r.setupFlags&setupSQPoll != 0 && r.sq.kflags.Load()&sqNeedWakeup != 0 {
		return enterSQWakeup
	}
	return 0
}

// Submit hands the prepared SQEs to the kernel without waiting and returns
// how many it consumed.
func (r *Ring) Submit() (int, error) {
	return r.submit(0, 0, false)
}

// SubmitAndWait submits the prepared SQEs and waits, in the same
// io_uring_enter, until at least waitNr completions are ready or timeout
// passes (timeout ≤ 0: no limit). It returns the number submitted; a timeout
// is not an error (Reap then finds fewer than waitNr CQEs). With waitNr 0 it
// does not block but still runs deferred completion work, which a
// DeferTaskrun ring needs before Reap can see completions.
//
// Signals (EINTR) restart the call; EBUSY/EAGAIN make it reap completions
// into the backlog and retry.
func (r *Ring) SubmitAndWait(waitNr uint32, timeout time.Duration) (int, error) {
	return r.submit(waitNr, timeout, true)
}

func (r *Ring) submit(waitNr uint32, timeout time.Duration, getEvents bool) (int, error) {
	if r.fd < 0 {
		return 0, ErrClosed
	}
	pending := r.flush()
	flags := uint32(0)
	toSubmit := pending
	if r.setupFlags&setupSQPoll != 0 {
		toSubmit = 0
		flags |= r.sqWakeupFlag()
		if !getEvents && flags == 0 {
			return int(pending), nil // the poller will pick them up
		}
	}
	if getEvents {
		flags |= enterGetEvents
		if r.backlogTail != r.backlogHead {
			waitNr = 0 // completions are already waiting for Reap
		}
	}
	ext := false
	if getEvents && waitNr > 0 && timeout > 0 {
		if r.features&FeatExtArg == 0 {
			return 0, fmt.Errorf("io_uring_enter with a timeout: IORING_FEAT_EXT_ARG (Linux 5.11): %w", ErrNotSupported)
		}
		r.waitTimeout = unix.NsecToTimespec(int64(timeout))
		flags |= enterExtArg
		ext = true
	}
	if toSubmit == 0 && flags == 0 {
		return 0, nil
	}
	n, err := r.enter(toSubmit, waitNr, flags, ext)
	if r.setupFlags&setupSQPoll != 0 {
		n = int(pending)
	}
	return n, err
}

// enter calls io_uring_enter, restarting after signals and reaping into the
// backlog when the kernel cannot post more completions (TigerBeetle's
// linux.zig handles these errnos the same way).
func (r *Ring) enter(toSubmit, minComplete, flags uint32, ext bool) (int, error) {
	for {
		n, errno := r.enterSyscall(toSubmit, minComplete, flags, ext)
		switch errno {
		case 0:
			return n, nil
		case unix.EINTR:
			continue
		case unix.ETIME:
			return 0, nil // the wait timed out before minComplete
		case unix.EAGAIN, unix.EBUSY:
			if r.reapToBacklog() > 0 {
				continue
			}
			// Nothing posted yet: run deferred work and flush the
			// kernel's overflow list, then try once more.
			if _, e := r.enterSyscall(0, 0, enterGetEvents, false); e != 0 && e != unix.EINTR {
				return 0, enterError(e)
			}
			if r.reapToBacklog() > 0 {
				continue
			}
			return 0, enterError(errno)
		default:
			return 0, enterError(errno)
		}
	}
}

// reapToBacklog moves CQEs off the CQ into the backlog to let the kernel
// post more; it returns how many it moved.
func (r *Ring) reapToBacklog() int {
	tail := r.cq.ktail.Load()
	head := r.cq.head
	room := uint32(len(r.backlog)) - (r.backlogTail - r.backlogHead)
	n := 0
	for head != tail && room > 0 {
		c := r.cq.cqes[head&r.cq.mask]
		r.retire(&c)
		r.backlog[r.backlogTail&uint32(len(r.backlog)-1)] = c
		r.backlogTail++
		head++
		room--
		n++
	}
	r.cq.head = head
	r.cq.khead.Store(head)
	return n
}

// retire lets go of the memory of the operation c ends, if it is its last
// CQE. CQEs of operations holding nothing cost one branch.
func (r *Ring) retire(c *CQE) {
	if r.inflight.live != 0 && c.Flags&CQEFMore == 0 {
		r.inflight.retire(c.UserData)
	}
}

// Ready returns how many completions Reap would return right now.
func (r *Ring) Ready() int {
	return int(r.backlogTail-r.backlogHead) + int(r.cq.ktail.Load()-r.cq.head)
}

// Reap copies up to len(dst) ready completions into dst, in completion
// order, releases their CQ slots to the kernel and returns how many it
// copied. It never blocks and never enters the kernel; call it until it
// returns less than len(dst). The copies stay valid as long as dst does.
func (r *Ring) Reap(dst []CQE) int {
	n := 0
	for r.backlogHead != r.backlogTail && n < len(dst) {
		dst[n] = r.backlog[r.backlogHead&uint32(len(r.backlog)-1)]
		r.backlogHead++
		n++
	}
	if n == len(dst) {
		return n
	}
	tail := r.cq.ktail.Load() // acquire: CQE contents below tail are complete
	head := r.cq.head
	for head != tail && n < len(dst) {
		dst[n] = r.cq.cqes[head&r.cq.mask]
		r.retire(&dst[n])
		head++
		n++
	}
	if head != r.cq.head {
		r.cq.head = head
		r.cq.khead.Store(head) // release: we are done reading these slots
	}
	return n
}

// closeTimeout bounds how long Close waits for cancelled operations to
// finish and post their last CQE before it gives up and keeps everything.
const closeTimeout = 5 * time.Second

// Close cancels every operation still in flight, waits until the kernel is
// done with the memory they point at, and then closes the ring and
// releases its mappings and every BufferRing registered on it.
//
// The wait has two parts: a synchronous cancel of everything
// (IORING_REGISTER_SYNC_CANCEL, Linux 6.0; an ASYNC_CANCEL of any request
// on older kernels), which returns once no cancelled request is still
// running, and reaping until every operation holding memory posted its
// last CQE. SQEs prepared but not yet submitted are dropped; completions
// not yet reaped are discarded.
//
// A SingleIssuer (or DeferTaskrun) ring can only be cancelled and reaped on
// the thread that created it. Called on another thread while operations
// holding memory may be in flight, Close returns an error wrapping
// ErrWrongThread and changes nothing: the ring stays open and usable,
// every mapping and every kept buffer stays, and a later Close on the
// owning thread finishes the job. With nothing holding memory in flight it
// closes from any thread (the kernel cancels the rest when the descriptor
// goes). If cancelled operations do not finish within closeTimeout, Close
// returns an error wrapping ErrInFlight and likewise keeps everything.
//
// On a ring submitted to from several threads (not SingleIssuer) the
// kernel's synchronous cancel finds blocking io-wq work of the calling
// thread only: operations that post a last CQE are still waited for, but
// skip-success ones are not; give such rings one submitting thread.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	if r.ownerTid != 0 {
		if tid := unix.Gettid(); tid != r.ownerTid {
			if r.inflight.live > 0 {
				return fmt.Errorf("io_uring: close: %w: the ring belongs to thread %d, Close ran on thread %d with %d operations that may still use memory; call Close on the ring's own thread", ErrWrongThread, r.ownerTid, tid, r.inflight.live)
			}
			return r.release()
		}
	}
	r.dropUnsubmitted()
	if err := r.quiesce(); err != nil {
		return fmt.Errorf("io_uring: close: %w", err)
	}
	return r.release()
}

// dropUnsubmitted forgets SQEs prepared since the last submission: the
// kernel never saw them.
func (r *Ring) dropUnsubmitted() {
	for s := r.sq.published; s != r.sq.tail; s++ {
		r.keep[s&r.sq.mask] = nil
	}
	r.sq.tail = r.sq.published
}

// quiesce cancels everything in flight and reaps until no operation holding
// memory is left.
func (r *Ring) quiesce() error {
	deadline := time.Now().Add(closeTimeout)
	// Submitted SQEs the kernel has not consumed yet (it pushed back with
	// EBUSY) would never complete: hand them over so they are cancelled
	// with the rest. An SQ poller consumes them on its own.
	for r.setupFlags&setupSQPoll == 0 && r.sq.published != r.sq.khead.Load() {
		if _, err := r.Submit(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the kernel did not consume %d submitted SQEs within %v", ErrInFlight, r.sq.published-r.sq.khead.Load(), closeTimeout)
		}
	}
	if err := r.cancelAll(deadline); err != nil {
		return err
	}
	var cqes [64]CQE
	for {
		for {
			n := r.Reap(cqes[:])
			if r.closeHook != nil {
				for _, c := range cqes[:n] {
					r.closeHook(c)
				}
			}
			if n < len(cqes) {
				break
			}
		}
		if r.inflight.pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d cancelled operations holding memory posted no last completion within %v", ErrInFlight, r.inflight.pending, closeTimeout)
		}
		var err error
		if r.features&FeatExtArg != 0 {
			_, err = r.SubmitAndWait(1, 10*time.Millisecond)
		} else {
			_, err = r.SubmitAndWait(0, 0) // runs deferred completion work
			time.Sleep(time.Millisecond)
		}
		if err != nil {
			return err
		}
	}
}

// release closes the ring and frees everything, in reverse order of setup;
// the kernel must be done with every operation's memory.
func (r *Ring) release() error {
	err := unix.Close(r.fd)
	leak.Untrack(r.fd)
	r.fd = -1
	for i := len(r.bufferRings) - 1; i >= 0; i-- {
		r.bufferRings[i].release()
	}
	r.bufferRings = nil
	for i := len(r.mappings) - 1; i >= 0; i-- {
		if e := unix.Munmap(r.mappings[i]); e != nil && err == nil {
			err = e
		}
	}
	r.mappings = nil
	r.sq = submissionQueue{}
	r.cq = completionQueue{}
	clear(r.keep)
	r.inflight.reset()
	if err != nil {
		return fmt.Errorf("io_uring: close: %w", err)
	}
	return nil
}

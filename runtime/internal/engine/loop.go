package engine

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// user_data of every operation a loop keeps in its ring: the top byte
// says whose it is (0: the loop itself, n: source n−1), the rest is the
// source's own (a slot index, never a Go pointer).
const (
	tagShift         = 56
	tagMask   uint64 = 0xff << tagShift
	tagWake   uint64 = 0 // the loop's READ on its eventfd
	maxSource        = 254
)

// Tag makes a source's user_data values.
type Tag uint64

// With returns the user_data for the source's value data (< 2^56).
func (t Tag) With(data uint64) uint64 { return uint64(t) | data&^tagMask }

// Source is the source's index on its loop (what Job.Source and Submit
// take).
func (t Tag) Source() int { return int(uint64(t)>>tagShift) - 1 }

// Source is one thing a loop drives: an AF_XDP socket, a kernel UDP
// socket, a TCP listener and its connections, a client's calls. Every
// method runs on the loop's locked thread.
type Source interface {
	// Setup runs once the ring exists; tag makes the source's user_data.
	Setup(l *Loop, tag Tag) error
	// Complete handles a completion of one of the source's operations;
	// data is its user_data without the tag.
	Complete(c *uring.CQE, data uint64)
	// Poll does the work no completion announces (AF_XDP rings, queued
	// calls) and reports whether there was any.
	Poll() bool
	// JobDone sends the reply of a blocking request the source submitted.
	JobDone(j *Job)
	// Idle runs before the loop sleeps: it arms what wakes the loop for
	// the source's work and reports whether work is pending already (then
	// the loop does not sleep) and the longest the loop may sleep (0: no
	// limit of the source's).
	Idle() (pending bool, sleep time.Duration, err error)
	// Cleanup runs after the ring is closed, so nothing the kernel was
	// still using is released early.
	Cleanup()
}

// ServerSource is what every server path's source keeps of its loop:
// embed it and call Bind in Setup.
type ServerSource struct {
	Loop  *Loop
	Tag   Tag
	Disp  *Dispatcher
	C     *LoopCounters
	Warn  *Warnings
	Queue int
}

// Bind records the loop a source was added to and its tag.
func (b *ServerSource) Bind(l *Loop, tag Tag) {
	*b = ServerSource{Loop: l, Tag: tag, Disp: &l.Dispatcher, C: &l.Counters, Warn: l.cfg.Warn, Queue: l.cfg.Queue}
}

// LoopConfig describes one loop.
type LoopConfig struct {
	// Index is the loop's index among its server's loops; Queue the RX
	// queue it serves first (or its index); Core the CPU it is pinned to
	// (-1: not pinned).
	Index, Queue, Core int
	// SQEntries and CQEntries size the ring.
	SQEntries, CQEntries uint32
	// BusyPoll and IdleTimeout: see Config.
	BusyPoll, IdleTimeout time.Duration
	// EnterEvery is how many spinning passes may go by without entering
	// the ring when nothing is to be submitted. A DEFER_TASKRUN ring posts
	// completions only when entered, so sources whose work arrives as
	// completions want 1; an AF_XDP loop polls its rings and wants more.
	EnterEvery int
	// Warn counts and logs the loop's troubles.
	Warn *Warnings
	// OnFail hears of an error that stopped the loop.
	OnFail func(error)
	// KeepBuffers poisons the ring's provided buffers and leaves them
	// mapped when the loop ends (uring.Ring.KeepBuffersMapped).
	KeepBuffers bool
}

// Loop is one event loop: a goroutine on a locked OS thread pinned to a
// core, owning one io_uring and the sources it drives. Workers and other
// goroutines reach it only through its eventfd (Wake, JobDone).
type Loop struct {
	cfg      LoopConfig
	ring     *uring.Ring
	cqes     []uring.CQE
	sources  []Source
	wakeBuf  [8]byte
	wakeErrs int
	stop     atomic.Bool
	ready    chan error
	exited   chan struct{}

	// Counters and Dispatcher serve the server paths on this loop; a
	// client loop leaves them unused.
	Counters   LoopCounters
	Dispatcher Dispatcher

	doneMu  sync.Mutex // guards done, closed and wakeFd against other goroutines
	done    []*Job
	spare   []*Job
	closed  bool
	wakeFd  int
	hasDone atomic.Bool
	pool    *Pool // where jobs go back when the loop is gone
	groups  uint16
	started bool
}

// BufferGroup returns a provided-buffer group id not yet used on the
// loop's ring; for sources, in Setup.
func (l *Loop) BufferGroup() uint16 {
	l.groups++
	return l.groups
}

// Submit hands an admitted blocking request to the worker pool on
// behalf of the loop's source number source, with room for a reply of
// replyCap bytes; route, when not nil, is copied into the job's Route.
// False when the pool is full.
func (l *Loop) Submit(m *Method, req *Request, replyCap, source int, route *Route) bool {
	j := l.pool.Get()
	if j == nil {
		return false
	}
	head, tail := l.Dispatcher.room(req.ident)
	j.Prepare(m, req, l.cfg.Index, &l.Counters, replyCap, head, tail)
	if route != nil {
		j.Route = *route
	}
	l.pool.Run(j, l, source)
	return true
}

// Pool is the worker pool the loop's jobs come from.
func (l *Loop) Pool() *Pool { return l.pool }

// Discard releases a loop that was never started, its sources included
// (a started loop releases itself when it exits; Discard then does
// nothing).
func (l *Loop) Discard() {
	if l.started {
		return
	}
	for _, s := range l.sources {
		s.Cleanup()
	}
	l.sources = nil
	l.doneMu.Lock()
	if l.wakeFd >= 0 {
		unix.Close(l.wakeFd)
		leak.Untrack(l.wakeFd)
		l.wakeFd = -1
	}
	l.closed = true
	l.doneMu.Unlock()
}

// NewLoop makes a loop with its eventfd; Start runs it.
func NewLoop(cfg LoopConfig, pool *Pool) (*Loop, error) {
	// Blocking on purpose: io_uring turns a READ that would block into an
	// internal poll, while on an O_NONBLOCK file it completes at once with
	// EAGAIN, which would spin the loop.
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("runtime: eventfd: %w", err)
	}
	leak.Track(fd)
	if cfg.EnterEvery < 1 {
		cfg.EnterEvery = 1
	}
	return &Loop{cfg: cfg, wakeFd: fd, ready: make(chan error, 1), exited: make(chan struct{}), pool: pool}, nil
}

// Add adds a source; only before Start.
func (l *Loop) Add(s Source) {
	if len(l.sources) == maxSource {
		panic("engine: too many sources on one loop")
	}
	l.sources = append(l.sources, s)
}

// Config returns the loop's configuration.
func (l *Loop) Config() LoopConfig { return l.cfg }

// Ring is the loop's ring; only for its sources, on the loop's thread.
func (l *Loop) Ring() *uring.Ring { return l.ring }

// Stopping reports whether the loop was asked to stop.
func (l *Loop) Stopping() bool { return l.stop.Load() }

// Start runs the loop on its own goroutine and returns once its ring and
// sources are set up, with the first setup error (the loop has then
// exited and released its ring).
func (l *Loop) Start() error {
	l.started = true
	go l.run()
	return <-l.ready
}

// Stop asks the loop to exit and waits until it has.
func (l *Loop) Stop() {
	l.RequestStop()
	<-l.exited
}

// RequestStop asks the loop to exit without waiting.
func (l *Loop) RequestStop() {
	l.stop.Store(true)
	l.Wake()
}

// Started reports whether Start was called.
func (l *Loop) Started() bool { return l.started }

// Exited is closed when the loop's goroutine is done.
func (l *Loop) Exited() <-chan struct{} { return l.exited }

// run is the loop goroutine's life: lock and keep the thread (it is
// pinned, so it must die with the goroutine rather than serve others),
// set up, report readiness, serve, close the ring (which cancels and
// waits for what is in flight), then let sources release what the kernel
// may have been using.
func (l *Loop) run() {
	defer close(l.exited)
	runtime.LockOSThread()
	err := l.setup()
	l.ready <- err
	if err == nil {
		if err = l.serve(); err != nil {
			l.cfg.Warn.logger.Error("loop failed", "queue", l.cfg.Queue, "err", err)
			if l.cfg.OnFail != nil {
				l.cfg.OnFail(err)
			}
		}
	}
	if l.ring != nil {
		if cerr := l.ring.Close(); cerr != nil {
			l.cfg.Warn.logger.Error("closing the loop's ring", "queue", l.cfg.Queue, "err", cerr)
		}
	}
	for _, s := range l.sources {
		s.Cleanup()
	}
	l.doneMu.Lock()
	l.closed = true
	pending := l.done
	l.done = nil
	if l.wakeFd >= 0 {
		unix.Close(l.wakeFd)
		leak.Untrack(l.wakeFd)
		l.wakeFd = -1
	}
	l.doneMu.Unlock()
	for _, j := range pending {
		l.pool.Release(j)
	}
}

func (l *Loop) setup() error {
	if l.cfg.Core >= 0 {
		if err := PinThread(l.cfg.Core); err != nil {
			return err
		}
	}
	// SINGLE_ISSUER and DEFER_TASKRUN: the ring is made, entered and
	// closed on this thread only.
	ring, err := uring.New(l.cfg.SQEntries, uring.WithSingleIssuer(), uring.WithDeferTaskrun(), uring.WithCQEntries(l.cfg.CQEntries))
	if err != nil {
		return fmt.Errorf("runtime: loop %d: %w", l.cfg.Index, err)
	}
	l.ring = ring
	if l.cfg.KeepBuffers {
		ring.KeepBuffersMapped()
	}
	l.cqes = make([]uring.CQE, 256)
	if err := l.armWake(); err != nil {
		return err
	}
	for i, s := range l.sources {
		if err := s.Setup(l, Tag(uint64(i+1)<<tagShift)); err != nil {
			return err
		}
	}
	_, err = l.ring.Submit()
	return err
}

func (l *Loop) armWake() error {
	if _, err := l.ring.PrepRead(l.wakeFd, l.wakeBuf[:], ^uint64(0), tagWake); err != nil {
		return fmt.Errorf("runtime: arming the loop's wakeup: %w", err)
	}
	return nil
}

// maxWakeErrs bounds consecutive failures of the wakeup READ before the
// loop gives up: without it nobody could reach the loop.
const maxWakeErrs = 100

func (l *Loop) serve() error {
	var idle IdleClock
	spins := 0
	for !l.stop.Load() {
		worked, err := l.reap()
		if err != nil {
			return err
		}
		if l.hasDone.Load() {
			l.takeDone()
			worked = true
		}
		for _, s := range l.sources {
			l.Dispatcher.NewPass() // what Poll takes arrived after the last batch's stamp
			if s.Poll() {
				worked = true
			}
		}
		if idle.Spin(worked, l.cfg.BusyPoll) {
			spins++
			if l.ring.SQSpace() != l.ring.SQEntries() || spins >= l.cfg.EnterEvery {
				spins = 0
				if _, err := l.ring.SubmitAndWait(0, 0); err != nil {
					return fmt.Errorf("runtime: io_uring_enter: %w", err)
				}
			}
			continue
		}
		// Going to sleep: every source arms what wakes it and re-checks
		// for work that arrived meanwhile, so nothing is stranded.
		pending := l.hasDone.Load()
		sleep := l.cfg.IdleTimeout
		for _, s := range l.sources {
			p, d, err := s.Idle()
			if err != nil {
				return err
			}
			pending = pending || p
			if d > 0 && d < sleep {
				sleep = d
			}
		}
		spins = 0
		if pending {
			if _, err := l.ring.SubmitAndWait(0, 0); err != nil {
				return fmt.Errorf("runtime: io_uring_enter: %w", err)
			}
			continue
		}
		if _, err := l.ring.SubmitAndWait(1, sleep); err != nil {
			return fmt.Errorf("runtime: io_uring_enter: %w", err)
		}
	}
	return nil
}

// reap handles every completion that is ready.
func (l *Loop) reap() (bool, error) {
	worked := false
	for {
		// Every request of one batch of completions was received before
		// the batch was reaped, so it can share the stamp read after that.
		l.Dispatcher.NewPass()
		n := l.ring.Reap(l.cqes)
		for i := 0; i < n; i++ {
			c := &l.cqes[i]
			tag := c.UserData & tagMask
			if tag == tagWake {
				if err := l.woken(c); err != nil {
					return worked, err
				}
				continue
			}
			l.sources[tag>>tagShift-1].Complete(c, c.UserData&^tagMask)
		}
		worked = worked || n > 0
		if n < len(l.cqes) {
			return worked, nil
		}
	}
}

// woken handles the completion of the wakeup READ: it is re-armed unless
// the loop stops, and failures are counted, not fatal, unless they go on.
func (l *Loop) woken(c *uring.CQE) error {
	if err := c.Err(); err != nil && !errors.Is(err, unix.ECANCELED) {
		l.cfg.Warn.CQEError(&l.Counters, CQEWake, l.cfg.Queue, err)
		if l.wakeErrs++; l.wakeErrs > maxWakeErrs {
			return fmt.Errorf("runtime: the loop's wakeup READ failed %d times in a row: %w", l.wakeErrs, err)
		}
	} else {
		l.wakeErrs = 0
	}
	if l.stop.Load() {
		return nil
	}
	return l.armWake()
}

// eventfdOne is the increment written to a loop's eventfd.
var eventfdOne = [8]byte{1}

// Wake makes a sleeping loop pass once; from any goroutine.
func (l *Loop) Wake() {
	l.doneMu.Lock()
	l.wakeLocked()
	l.doneMu.Unlock()
}

// wakeLocked writes the eventfd; doneMu keeps run from closing it (and
// its number from being reused) meanwhile.
func (l *Loop) wakeLocked() {
	if l.wakeFd < 0 {
		return
	}
	for {
		if _, err := unix.Write(l.wakeFd, eventfdOne[:]); err != unix.EINTR {
			return
		}
	}
}

// JobDone runs on a worker: queue the job for the loop and wake it. A job
// whose loop is gone is released.
func (l *Loop) JobDone(j *Job) {
	l.doneMu.Lock()
	if l.closed {
		l.doneMu.Unlock()
		l.pool.Release(j)
		return
	}
	l.done = append(l.done, j)
	l.hasDone.Store(true)
	l.wakeLocked()
	l.doneMu.Unlock()
}

// takeDone hands the jobs finished since the last call to the sources
// that submitted them.
func (l *Loop) takeDone() {
	l.doneMu.Lock()
	jobs := l.done
	l.done = l.spare[:0]
	l.spare = jobs
	l.hasDone.Store(false)
	l.doneMu.Unlock()
	for i, j := range jobs {
		jobs[i] = nil
		l.Dispatcher.JobFinished(j)
		l.sources[j.Source].JobDone(j)
	}
}

// PinThread pins the calling (locked) OS thread to core.
func PinThread(core int) error {
	var set unix.CPUSet
	set.Set(core)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("runtime: pinning a loop thread to core %d: %w", core, err)
	}
	return nil
}

// IdleClock decides when a loop stops spinning: it keeps spinning for the
// busy-poll window after the last pass that did work. It reads the clock
// once when the loop goes idle and then every idleClockEvery idle passes,
// since a clock read per spinning pass showed up as 14 % of an AF_XDP
// loop's profile.
type IdleClock struct {
	since  time.Time // zero while the loop is busy
	passes int
}

const idleClockEvery = 16

// Spin records a pass and reports whether the loop should go on spinning
// rather than sleep.
func (c *IdleClock) Spin(worked bool, window time.Duration) bool {
	if worked {
		c.since, c.passes = time.Time{}, 0
		return window > 0
	}
	if window <= 0 {
		return false
	}
	if c.since.IsZero() {
		c.since = time.Now()
		return true
	}
	if c.passes++; c.passes%idleClockEvery != 0 {
		return true
	}
	return time.Since(c.since) < window
}

package runtime

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// user_data of the requests a loop keeps in its ring: a tag in the top
// byte, a slot index below.
const (
	udTagMask uint64 = 0xff << 56
	udRecv    uint64 = 1 << 56 // uring backend: multishot RECVMSG
	udSend    uint64 = 2 << 56 // uring backend: SENDMSG from a send slot
	udWake    uint64 = 3 << 56 // READ on the loop's eventfd
	udPoll    uint64 = 4 << 56 // XSK backend: POLL_ADD on the socket
	udKick    uint64 = 5 << 56 // XSK backend: TX kick (CQE only on failure)
)

// loopBase is what every backend's loop has: identity, counters, the
// dispatcher, the stop flag and the eventfd through which workers hand back
// finished blocking requests and Shutdown wakes the loop.
type loopBase struct {
	srv              *Server
	idx, queue, core int
	stats            loopCounters
	disp             dispatcher
	stop             atomic.Bool
	ready            chan error
	ring             *uring.Ring
	cqes             []uring.CQE
	wakeBuf          [8]byte

	doneMu     sync.Mutex // guards done, closed and wakeFd against workers
	done, idle []*job
	closed     bool
	wakeFd     int
	hasDone    atomic.Bool
}

func (l *loopBase) init(s *Server, idx int) error {
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		l.wakeFd = -1
		return fmt.Errorf("runtime: eventfd: %w", err)
	}
	leak.Track(wake)
	*l = loopBase{srv: s, idx: idx, queue: s.cfg.queues[idx], core: s.cfg.cores[idx], wakeFd: wake,
		ready: make(chan error, 1)}
	l.disp = dispatcher{srv: s, queue: l.queue, stats: &l.stats}
	return nil
}

// newRing pins the calling (locked) thread and makes its ring there, as
// SINGLE_ISSUER and DEFER_TASKRUN require, with the wakeup READ armed.
func (l *loopBase) newRing(entries, cqEntries uint32) error {
	if err := pinThread(l.core); err != nil {
		return err
	}
	ring, err := uring.New(entries, uring.WithSingleIssuer(), uring.WithDeferTaskrun(), uring.WithCQEntries(cqEntries))
	if err != nil {
		return fmt.Errorf("runtime: queue %d: %w", l.queue, err)
	}
	l.ring = ring
	l.cqes = make([]uring.CQE, 256)
	return l.armWake()
}

func (l *loopBase) armWake() error {
	if _, err := l.ring.PrepRead(l.wakeFd, l.wakeBuf[:], ^uint64(0), udWake); err != nil {
		return fmt.Errorf("runtime: arming wakeup: %w", err)
	}
	return nil
}

// eventLoop is what a backend's loop adds to loopBase.
type eventLoop interface {
	base() *loopBase
	// setup runs on the loop's locked thread before it serves.
	setup() error
	// serve runs until the loop is asked to stop or fails.
	serve() error
	// cleanup runs after the ring is closed, so nothing the kernel was
	// still using is released early.
	cleanup()
}

func (l *loopBase) base() *loopBase { return l }

// startLoops starts one goroutine per loop and returns once every loop has
// set up its ring, with the first setup failure.
func startLoops[L eventLoop](wg *sync.WaitGroup, loops []L) error {
	for _, l := range loops {
		wg.Add(1)
		go run(wg, l)
	}
	var first error
	for _, l := range loops {
		if err := <-l.base().ready; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// stopLoops asks every loop to stop and waits until they have.
func stopLoops[L eventLoop](wg *sync.WaitGroup, loops []L) {
	for _, l := range loops {
		l.base().requestStop()
	}
	wg.Wait()
}

// run is a loop goroutine's life: lock and keep the thread (it is pinned,
// so it must die with the goroutine rather than serve others), set up,
// report readiness, serve, close the ring (which cancels and waits for
// what is in flight), then cleanup whatever the kernel may have been using.
func run(wg *sync.WaitGroup, loop eventLoop) {
	defer wg.Done()
	l := loop.base()
	runtime.LockOSThread()
	err := loop.setup()
	l.ready <- err
	if err == nil {
		if err := loop.serve(); err != nil {
			l.srv.cfg.logger.Error("loop failed", "queue", l.queue, "err", err)
			l.srv.fail(err)
		}
	}
	if l.ring != nil {
		l.ring.Close() // cancels what is in flight and waits before unmapping
	}
	loop.cleanup()
	l.doneMu.Lock()
	l.closed = true
	pending := l.done
	l.done = nil
	l.doneMu.Unlock()
	for _, j := range pending {
		l.srv.workers.release(j)
	}
}

// idleClock decides when a loop stops spinning: it keeps spinning for the
// busy-poll window after the last pass that did work. It reads the clock
// once when the loop goes idle and then every idleClockEvery idle passes,
// since a clock read per spinning pass showed up as 14 % of an XSK loop's
// profile.
type idleClock struct {
	since  time.Time // zero while the loop is busy
	passes int
}

const idleClockEvery = 16

// spin records a pass and reports whether the loop should go on spinning
// rather than sleep.
func (c *idleClock) spin(worked bool, window time.Duration) bool {
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

// wait ends a loop pass: submit without sleeping while spinning, else sleep
// in io_uring_enter until a completion or the idle timeout.
func (l *loopBase) wait(spin bool) error {
	var err error
	if spin {
		_, err = l.ring.SubmitAndWait(0, 0)
	} else {
		_, err = l.ring.SubmitAndWait(1, l.srv.cfg.idleTimeout)
	}
	if err != nil {
		return fmt.Errorf("runtime: io_uring_enter: %w", err)
	}
	return nil
}

// jobDone runs on a worker: queue the job for the loop and wake it.
func (l *loopBase) jobDone(j *job) {
	l.doneMu.Lock()
	if l.closed {
		l.doneMu.Unlock()
		l.srv.workers.release(j)
		return
	}
	l.done = append(l.done, j)
	l.hasDone.Store(true)
	l.wakeLocked()
	l.doneMu.Unlock()
}

// takeDone returns the jobs finished since the last call, no longer in
// flight for duplicate detection; the slice is reused by the next call.
func (l *loopBase) takeDone() []*job {
	l.doneMu.Lock()
	jobs := l.done
	l.done = l.idle[:0]
	l.idle = jobs
	l.hasDone.Store(false)
	l.doneMu.Unlock()
	for _, j := range jobs {
		l.disp.jobFinished(j)
	}
	return jobs
}

// requestStop makes the loop leave its wait and exit.
func (l *loopBase) requestStop() {
	l.stop.Store(true)
	l.doneMu.Lock()
	l.wakeLocked()
	l.doneMu.Unlock()
}

// wakeLocked writes the eventfd; doneMu keeps closeWake from closing it
// (and its number from being reused) meanwhile.
func (l *loopBase) wakeLocked() {
	if l.wakeFd < 0 {
		return
	}
	one := [8]byte{1}
	_, _ = unix.Write(l.wakeFd, one[:])
}

func (l *loopBase) closeWake() {
	l.doneMu.Lock()
	if l.wakeFd >= 0 {
		unix.Close(l.wakeFd)
		leak.Untrack(l.wakeFd)
		l.wakeFd = -1
	}
	l.doneMu.Unlock()
}

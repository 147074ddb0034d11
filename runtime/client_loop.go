package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	goruntime "runtime"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// user_data of the loop's operations. A SEND carries its call's request id
// (ids count up from 1 and never reach bit 63); the two long-lived
// operations use values with bit 63 set.
const (
	udClientRecv  uint64 = 1 << 63
	udClientEvent uint64 = 1<<63 | 1
)

const (
	clientRingEntries = 256
	clientCQEntries   = 4096
	clientReplyGroup  = 0
	// recvmsgHeaderLen is sizeof(struct io_uring_recvmsg_out), which the
	// kernel writes in front of every datagram in a provided buffer.
	recvmsgHeaderLen = 16
	// maxConsecutiveRecvErrs bounds how often the receive is re-armed after
	// errors with no datagram in between before the loop gives up.
	maxConsecutiveRecvErrs = 1000
)

// clientLoop is the state only the loop goroutine touches.
type clientLoop struct {
	c     *Client
	ring  *uring.Ring
	bufs  *uring.BufferRing
	epoch time.Time

	recvMsg  unix.Msghdr // Namelen 0, Controllen 0: payload only
	eventBuf [8]byte     // the eventfd counter lands here

	calls       map[uint64]*Call // every call the loop owns, by request id
	timers      callHeap         // unfinished calls by retransmission time
	batch       []*Call
	cancelBatch []cancelRequest
	cqes        [128]uring.CQE

	recvArmed, eventArmed bool
	recvErrs              int    // consecutive receive errors
	sendsPrepared         uint32 // SENDs prepared since the last enter
	lastActiveNs          int64
}

// runLoop is the client goroutine: it sets up the ring on its own locked
// thread, reports setup on ready, and serves until Close.
func (c *Client) runLoop(ready chan<- error) {
	defer close(c.loopDone)
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()

	l := &clientLoop{c: c, epoch: time.Now(), calls: make(map[uint64]*Call, 64)}
	if err := l.setup(); err != nil {
		if l.ring != nil {
			l.ring.Close()
		}
		c.mu.Lock()
		c.closed, c.closeErr = true, errLoopGone(err)
		c.mu.Unlock()
		ready <- err
		return
	}
	ready <- nil
	err := l.serve()
	l.shutdown(err)
}

func (l *clientLoop) setup() error {
	ring, err := uring.New(clientRingEntries, uring.WithDeferTaskrun(), uring.WithCQEntries(clientCQEntries))
	if err != nil {
		return err
	}
	l.ring = ring
	size := recvmsgHeaderLen + proto.HeaderLen + l.c.cfg.maxReplyPayload
	l.bufs, err = ring.NewBufferRing(clientReplyGroup, l.c.cfg.replyBuffers, size)
	if err != nil {
		return fmt.Errorf("reply buffer ring: %w", err)
	}
	if err := l.armRecv(); err != nil {
		return err
	}
	if err := l.armEvent(); err != nil {
		return err
	}
	if _, err := ring.Submit(); err != nil {
		return fmt.Errorf("io_uring_enter: %w", err)
	}
	return nil
}

func (l *clientLoop) armRecv() error {
	if _, err := l.ring.PrepRecvmsgMultishot(l.c.fd, &l.recvMsg, l.bufs.Group(), 0, udClientRecv); err != nil {
		return fmt.Errorf("arm multishot recvmsg: %w", err)
	}
	l.recvArmed = true
	return nil
}

func (l *clientLoop) armEvent() error {
	if _, err := l.ring.PrepRead(l.c.eventfd, l.eventBuf[:], ^uint64(0), udClientEvent); err != nil {
		return fmt.Errorf("arm eventfd read: %w", err)
	}
	l.eventArmed = true
	return nil
}

func (l *clientLoop) nowNs() int64 { return int64(time.Since(l.epoch)) }

// serve runs passes until Close or a fatal error: take new calls and
// cancellations, retransmit what is due, submit and wait, reap.
func (l *clientLoop) serve() error {
	c := l.c
	for {
		c.mu.Lock()
		c.asleep = false
		l.batch, c.queue = c.queue, l.batch[:0]
		l.cancelBatch, c.cancels = c.cancels, l.cancelBatch[:0]
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return nil // shutdown fails what was queued
		}

		now := l.nowNs()
		// Calls before cancellations: a cancellation is always queued after
		// its call, so it then finds the call registered.
		for i, call := range l.batch {
			l.start(call, now)
			l.batch[i] = nil
		}
		l.batch = l.batch[:0]
		for i, cr := range l.cancelBatch {
			if call := l.calls[cr.id]; call != nil && !call.finished {
				l.fail(call, cr.err)
			}
			l.cancelBatch[i] = cancelRequest{}
		}
		l.cancelBatch = l.cancelBatch[:0]
		l.retransmitDue(now)

		if !l.eventArmed {
			if err := l.armEvent(); err != nil {
				return err
			}
		}
		if !l.recvArmed {
			if err := l.armRecv(); err != nil {
				return err
			}
		}

		// Sleep only when nobody queued anything meanwhile; callers then
		// write the eventfd. Wait for the CQEs of this pass's SENDs (they
		// complete during the submit) plus one more event.
		var waitNr uint32
		var timeout time.Duration
		if l.mayWait(now) {
			waitNr = 1 + l.sendsPrepared
			if len(l.timers) > 0 {
				timeout = max(time.Duration(l.timers[0].dueNs-now), time.Microsecond)
			}
		}
		l.sendsPrepared = 0
		if _, err := l.ring.SubmitAndWait(waitNr, timeout); err != nil {
			return fmt.Errorf("io_uring_enter: %w", err)
		}
		if err := l.reap(); err != nil {
			return err
		}
	}
}

// mayWait decides whether this pass sleeps in the ring and, if so, tells
// callers to wake it.
func (l *clientLoop) mayWait(now int64) bool {
	if bp := l.c.cfg.busyPoll; bp > 0 && len(l.calls) > 0 && now-l.lastActiveNs < int64(bp) {
		return false
	}
	c := l.c
	c.mu.Lock()
	idle := len(c.queue) == 0 && len(c.cancels) == 0 && !c.closed
	c.asleep = idle
	c.mu.Unlock()
	return idle
}

// start registers a new call and sends its first copy.
func (l *clientLoop) start(call *Call, now int64) {
	if call.state.Load() == callAbandoned {
		l.c.putCall(call) // the caller gave up before it was ever sent
		return
	}
	l.calls[call.id] = call
	if call.ctx != nil {
		if err := call.ctx.Err(); err != nil {
			l.fail(call, l.c.callError(call.Method, err))
			return
		}
	}
	call.rtoNs = int64(l.c.cfg.initialRTO)
	l.c.stats.requests.Add(1)
	if err := l.send(call, now); err != nil {
		l.fail(call, l.c.callError(call.Method, err))
		return
	}
	l.timers.push(call)
}

func (l *clientLoop) send(call *Call, now int64) error {
	if _, err := l.ring.PrepSend(l.c.fd, call.frame, 0, call.id); err != nil {
		return err
	}
	call.sending++
	call.attempts++
	l.sendsPrepared++
	call.dueNs = now + call.rtoNs
	return nil
}

// retransmitDue sends another copy of every call whose timeout passed, or
// fails it after its last copy.
func (l *clientLoop) retransmitDue(now int64) {
	maxAttempts := l.c.cfg.maxAttempts
	for len(l.timers) > 0 && l.timers[0].dueNs <= now {
		call := l.timers[0]
		if maxAttempts > 0 && call.attempts >= maxAttempts {
			err := fmt.Errorf("%w after %d attempts", ErrNoReply, call.attempts)
			l.fail(call, l.c.callError(call.Method, err))
			continue
		}
		call.rtoNs = min(call.rtoNs*2, int64(l.c.cfg.maxRTO))
		l.c.stats.retransmits.Add(1)
		if err := l.send(call, now); err != nil {
			l.fail(call, l.c.callError(call.Method, err))
			continue
		}
		l.timers.fix(call)
	}
}

// fail ends a call with err (ignored when the caller abandoned it).
func (l *clientLoop) fail(call *Call, err error) {
	l.timers.remove(call)
	call.finished = true
	if call.state.CompareAndSwap(callPending, callCompleting) {
		call.Err = err
	}
	l.release(call)
}

// complete ends a call with its reply.
func (l *clientLoop) complete(call *Call, f proto.Frame) {
	l.timers.remove(call)
	call.finished = true
	if call.state.CompareAndSwap(callPending, callCompleting) {
		// Only now may the loop write into the caller's buf: an abandoning
		// caller's CompareAndSwap has failed and it waits on Done.
		status := f.Status()
		call.Reply.Status = status
		call.Reply.Payload = append(call.buf[:0], f.Payload()...)
		if f.Kind() == proto.KindResponse && status != proto.StatusOK {
			call.Err = &StatusError{Status: status, Message: string(f.ErrorMessage())}
		}
	}
	l.release(call)
}

// release hands a finished call over once no SEND of it is in flight: to
// its caller through Done, or back to the pool when the caller left.
func (l *clientLoop) release(call *Call) {
	if call.sending > 0 {
		return // the last SEND completion releases it
	}
	delete(l.calls, call.id)
	if call.stop != nil {
		call.stop()
		call.stop = nil
	}
	call.ctx = nil
	if call.state.Load() == callAbandoned {
		l.c.putCall(call)
		return
	}
	call.Done <- call
}

// reap handles every completion that is ready.
func (l *clientLoop) reap() error {
	for {
		n := l.ring.Reap(l.cqes[:])
		for i := range l.cqes[:n] {
			cqe := &l.cqes[i]
			switch cqe.UserData {
			case udClientRecv:
				if err := l.onRecv(cqe); err != nil {
					return err
				}
			case udClientEvent:
				l.eventArmed = false
				if err := cqe.Err(); err != nil && !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
					return fmt.Errorf("eventfd read: %w", err)
				}
			default:
				l.onSent(cqe)
			}
		}
		l.bufs.Publish()
		if n < len(l.cqes) {
			return nil
		}
	}
}

func (l *clientLoop) onRecv(cqe *uring.CQE) error {
	if id, ok := cqe.BufferID(); ok {
		if cqe.Res >= 0 {
			l.onDatagram(l.bufs.Buffer(id)[:cqe.Res])
		}
		l.bufs.Put(id)
		l.recvErrs = 0
	}
	if cqe.More() {
		return nil
	}
	l.recvArmed = false // re-armed before the next wait
	if err := cqe.Err(); err != nil && !cqe.NoBuffers() {
		// A connected UDP socket reports ICMP errors (ECONNREFUSED when
		// nobody listens) to the next receive, which ends the multishot
		// request. Calls keep retransmitting until their limit.
		l.noteSocketError(err)
		l.recvErrs++
		if l.recvErrs > maxConsecutiveRecvErrs {
			return fmt.Errorf("multishot recvmsg failed %d times in a row: %w", l.recvErrs, err)
		}
	}
	return nil
}

// noteSocketError keeps err for the messages of calls that get no reply.
func (l *clientLoop) noteSocketError(err error) {
	l.c.stats.socketErrs.Add(1)
	l.c.lastSocketErr.Store(&err) // err escapes here only, on the error path
}

// onDatagram matches one received datagram to its call.
func (l *clientLoop) onDatagram(buf []byte) {
	st := &l.c.stats
	out, err := uring.ParseRecvmsgOut(buf, 0, 0)
	if err != nil {
		st.malformed.Add(1)
		return
	}
	l.lastActiveNs = l.nowNs()
	if out.Truncated() {
		st.tooLarge.Add(1)
		p := out.Payload
		if len(p) >= proto.HeaderLen && binary.BigEndian.Uint32(p) == proto.Magic && p[4] == proto.Version {
			if call := l.calls[binary.BigEndian.Uint64(p[8:16])]; call != nil && !call.finished {
				l.fail(call, l.c.callError(call.Method, fmt.Errorf("%w: %d bytes of payload, room for %d (see WithReplyBuffers)",
					ErrReplyTooLarge, out.PayloadLen-proto.HeaderLen, l.c.cfg.maxReplyPayload)))
			}
		}
		return
	}
	f, err := proto.Parse(out.Payload)
	if err != nil {
		st.malformed.Add(1)
		return
	}
	call := l.calls[f.RequestID()]
	if call == nil || call.finished {
		st.duplicates.Add(1)
		return
	}
	want := proto.KindResponse
	if call.kind == proto.KindPing {
		want = proto.KindPong
	}
	if f.Kind() != want {
		st.malformed.Add(1)
		return
	}
	st.replies.Add(1)
	l.complete(call, f)
}

// onSent handles a SEND completion.
func (l *clientLoop) onSent(cqe *uring.CQE) {
	call := l.calls[cqe.UserData]
	if call == nil {
		panic(fmt.Sprintf("runtime: client loop: SEND completion for unknown request id %d", cqe.UserData))
	}
	call.sending--
	if err := cqe.Err(); err != nil {
		switch {
		case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.EHOSTUNREACH),
			errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN):
			// Transient: the retransmission timer tries again.
			l.noteSocketError(err)
		default:
			if !call.finished {
				l.fail(call, l.c.callError(call.Method, fmt.Errorf("send: %w", err)))
				return
			}
		}
	}
	if call.finished {
		l.release(call)
	}
}

// shutdown fails every call the loop still has or that is queued, closes
// the ring (which cancels and waits for the kernel's pending operations),
// and then hands over the calls whose sends were still in flight.
func (l *clientLoop) shutdown(loopErr error) {
	c := l.c
	failErr := ErrClientClosed
	c.mu.Lock()
	if !c.closed {
		c.closed, c.closeErr = true, errLoopGone(loopErr)
	}
	if loopErr != nil {
		failErr = errLoopGone(loopErr)
	}
	queued := append(l.batch[:0], c.queue...)
	c.queue, c.cancels = nil, nil
	c.asleep = false
	c.mu.Unlock()

	for _, call := range queued {
		if call.state.CompareAndSwap(callPending, callCompleting) {
			call.Err = failErr
			if call.stop != nil {
				call.stop()
				call.stop = nil
			}
			call.ctx = nil
			call.Done <- call
		} else {
			c.putCall(call)
		}
	}
	for _, call := range l.calls {
		if !call.finished {
			l.fail(call, failErr)
		}
	}
	l.ring.Close()
	for _, call := range l.calls {
		call.sending = 0 // the ring is gone: the kernel no longer reads frames
		l.release(call)
	}
}

// callHeap orders unfinished calls by retransmission time.
type callHeap []*Call

func (h *callHeap) push(call *Call) {
	call.heapIndex = len(*h)
	*h = append(*h, call)
	h.up(call.heapIndex)
}

func (h *callHeap) remove(call *Call) {
	i := call.heapIndex
	if i < 0 {
		return
	}
	s := *h
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].heapIndex = i
	}
	s[last] = nil
	*h = s[:last]
	call.heapIndex = -1
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

// fix restores the order after call's due time grew.
func (h *callHeap) fix(call *Call) {
	if !h.down(call.heapIndex) {
		h.up(call.heapIndex)
	}
}

func (h callHeap) less(i, j int) bool { return h[i].dueNs < h[j].dueNs }

func (h callHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h callHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts i down and reports whether it moved.
func (h callHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		child := 2*i + 1
		if child >= n {
			break
		}
		if r := child + 1; r < n && h.less(r, child) {
			child = r
		}
		if !h.less(child, i) {
			break
		}
		h.swap(i, child)
		i = child
	}
	return i > start
}

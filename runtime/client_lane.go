package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"golang.org/x/sys/unix"
)

// A caller lane is a UDP socket of the engine on which a synchronous Call
// runs from start to end on its caller's own thread: the caller writes the
// request and blocks in read(2) until the reply (or its retransmission
// timeout) comes. The loop is not involved, so a lone caller pays no
// handoff to the loop's locked thread and none back — the two goroutine
// wakeups that made one outstanding call through the loop about twice as
// slow as a plain net.UDPConn (whose reply wakes the reader through the
// netpoller). The kernel wakes the blocked thread directly.
//
// Lanes are few (WithCallerLanes, default 2 per address family) because a
// caller blocked in read holds an OS thread: a Call that finds none free
// goes through the loop as before, so the thread count stays bounded
// whatever the number of callers. A lane is connected to the endpoint of
// its last call (connect(2) again only when the next call is for another
// one), so the kernel delivers it only that server's datagrams and
// reports an ICMP port unreachable as ECONNREFUSED on the read.
type callerLane struct {
	fd   int
	peer *endpoint // whom fd is connected to (nil: nobody yet)
	buf  []byte    // one datagram, a byte more than the largest reply
	oob  []byte    // an error queue entry's control message, made on first use
	// timeout is the SO_RCVTIMEO set on fd now, so that it is set again
	// only when a wait wants another.
	timeout time.Duration
}

// laneSlice bounds one blocking read: a lane's caller looks at its
// context, its Client and its engine at least this often, which is how
// soon Call returns once its context is cancelled or the Client closed,
// and how long Engine.Close may wait for a lane to come back.
const laneSlice = 2 * time.Millisecond

// laneTimeoutStep rounds a read's timeout up so that consecutive waits
// mostly want the same SO_RCVTIMEO and the setsockopt is skipped.
const laneTimeoutStep = 250 * time.Microsecond

// callerLanes are an engine's lanes: a free list per address family.
type callerLanes struct {
	mu     sync.Mutex
	free4  []*callerLane
	free6  []*callerLane
	all    []*callerLane
	closed atomic.Bool
	busy   sync.WaitGroup
	calls  atomic.Uint64 // calls that ran on a lane
}

// open makes n lanes per family. It runs in NewEngine, on the thread that
// makes the engine: a socket lives in the network namespace it was made
// in. A family the host does not have gets no lanes.
func (ls *callerLanes) open(n, maxReply int) error {
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
			if err != nil {
				if family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
					break
				}
				ls.close()
				return fmt.Errorf("runtime: caller lane socket: %w", err)
			}
			leak.Track(fd)
			// Host and network unreachable ICMPs reach a connected socket
			// only with IP_RECVERR, as on the loop's sockets.
			if name, err := setRecvErr(fd, family); err != nil {
				sockpath.CloseFd(&fd)
				ls.close()
				return fmt.Errorf("runtime: caller lane socket %s: %w", name, err)
			}
			ln := &callerLane{fd: fd, buf: make([]byte, maxReply+1)}
			ls.all = append(ls.all, ln)
			if family == unix.AF_INET {
				ls.free4 = append(ls.free4, ln)
			} else {
				ls.free6 = append(ls.free6, ln)
			}
		}
	}
	return nil
}

// take returns a free lane for ep, preferably one connected to it already,
// or nil when none is free.
func (ls *callerLanes) take(ep *endpoint) *callerLane {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	free := &ls.free4
	if !ep.key.addr.Addr().Is4() {
		free = &ls.free6
	}
	n := len(*free)
	if ls.closed.Load() || n == 0 {
		return nil
	}
	pick := n - 1
	for i, ln := range *free {
		if ln.peer == ep {
			pick = i
			break
		}
	}
	ln := (*free)[pick]
	(*free)[pick] = (*free)[n-1]
	*free = (*free)[:n-1]
	ls.busy.Add(1)
	return ln
}

func (ls *callerLanes) put(ln *callerLane, ep *endpoint) {
	ls.mu.Lock()
	if ep.key.addr.Addr().Is4() {
		ls.free4 = append(ls.free4, ln)
	} else {
		ls.free6 = append(ls.free6, ln)
	}
	ls.mu.Unlock()
	ls.busy.Done()
}

// close waits for the lanes in use to come back (each within laneSlice of
// the engine's closing) and closes every socket.
func (ls *callerLanes) close() {
	ls.mu.Lock()
	ls.closed.Store(true)
	ls.mu.Unlock()
	ls.busy.Wait()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, ln := range ls.all {
		sockpath.CloseFd(&ln.fd)
	}
	ls.all, ls.free4, ls.free6 = nil, nil, nil
}

// connect points the lane at ep. Datagrams still queued from the previous
// endpoint are late replies of its calls: they are read off and counted
// as its duplicates, so that they are not taken for ep's.
func (ln *callerLane) connect(ep *endpoint) error {
	if ln.peer == ep {
		return nil
	}
	if errno := connectTo(ln.fd, ep.name); errno != 0 {
		return errno // still connected to ln.peer, if anyone
	}
	if old := ln.peer; old != nil {
		ln.drain(old)
	}
	ln.peer = ep
	return nil
}

// drain reads the datagrams queued on the lane, late copies of replies
// from ep, and counts them as ep's duplicates; an error the socket held
// (an ICMP for an earlier copy) is read with them and dropped.
func (ln *callerLane) drain(ep *endpoint) {
	for range 1024 {
		_, errno := recvFrom(ln.fd, ln.buf, unix.MSG_DONTWAIT)
		switch errno {
		case 0:
			ep.duplicates.Add(1)
		case unix.EINTR:
		case unix.EAGAIN:
			return
		default:
			ln.dropErrors(0)
		}
	}
}

// dropErrors empties the lane's error queue — IP_RECVERR keeps each ICMP
// error there, whatever its kind, beside the error it reports once on the
// socket, and the entries hold receive-buffer room until read — and
// returns the error of an entry saying that a datagram of request id (or
// one it cannot tell: the datagram did not come back) cannot reach the
// server, 0 if none. It runs only on error paths, where Recvmsg's
// allocation does not matter.
func (ln *callerLane) dropErrors(id uint64) (unreachable unix.Errno) {
	if ln.oob == nil {
		ln.oob = make([]byte, 512)
	}
	for range 256 {
		n, oobn, _, _, err := unix.Recvmsg(ln.fd, ln.buf, ln.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return unreachable // EAGAIN: empty
		}
		errno := errnoOf(ln.oob[:oobn])
		if got, ok := replyID(ln.buf[:n]); isUnreachable(errno) && (!ok || got == id) {
			unreachable = errno
		}
	}
	return unreachable
}

// isUnreachable reports whether errno is what an ICMP error makes of a
// socket operation: the server's port or host is not there.
func isUnreachable(errno unix.Errno) bool {
	return errno == unix.ECONNREFUSED || errno == unix.EHOSTUNREACH || errno == unix.ENETUNREACH
}

// drainIdle drains the free lanes connected to ep: a lane reads only
// while a call runs on it, so the late copies of its last call's reply
// wait there, uncounted, until its next call — or until Stats asks.
func (ls *callerLanes) drainIdle(ep *endpoint) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed.Load() {
		return // the sockets are being closed, or are
	}
	for _, free := range [][]*callerLane{ls.free4, ls.free6} {
		for _, ln := range free {
			if ln.peer == ep {
				ln.drain(ep)
			}
		}
	}
}

// send writes one copy of call id's frame. An ICMP error for an earlier
// datagram may be pending on the socket and fail the write (the write
// takes it): when it says an earlier copy of this call could not reach the
// server, send returns it with unreachable set, and the call ends with it;
// about anything else, the error is dropped and the copy written again.
func (ln *callerLane) send(frame []byte, id uint64) (errno unix.Errno, unreachable bool) {
	for try := 0; ; try++ {
		errno = sendTo(ln.fd, frame)
		switch {
		case errno == 0, errno == unix.EAGAIN, errno == unix.ENOBUFS:
			return errno, false
		case errno == unix.EINTR:
			continue
		}
		if e := ln.dropErrors(id); e != 0 {
			return e, true
		}
		if try > 0 {
			return errno, false
		}
	}
}

// setTimeout makes the next blocking read on the lane wait at most d
// (rounded up to laneTimeoutStep, at most laneSlice).
func (ln *callerLane) setTimeout(d time.Duration) error {
	d = min((d+laneTimeoutStep-1)/laneTimeoutStep*laneTimeoutStep, laneSlice)
	d = max(d, laneTimeoutStep)
	if d == ln.timeout {
		return nil
	}
	tv := unix.NsecToTimeval(int64(d))
	if err := unix.SetsockoptTimeval(ln.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	ln.timeout = d
	return nil
}

// autoSpin is how long a lane's caller polls for its reply before it
// blocks when WithCallerSpin did not say: twice the endpoint's smoothed
// RTT, at most maxAutoSpin, none before the first sample. A reply that
// comes within it costs no sleep and no wakeup of an idle core — on a VM
// the larger part of a short round trip: measured here, one call's p50
// went from about 0.9× a net.UDPConn client's to about 0.6× (see
// BenchmarkClientEngine) — and a caller waiting on a slower server spins
// for at most a couple of its own round trips, never more than 50 µs.
func autoSpin(ep *endpoint) time.Duration {
	return min(time.Duration(2*ep.srttNs.Load()), maxAutoSpin)
}

const maxAutoSpin = 50 * time.Microsecond

// laneEligible reports whether a synchronous call can run on a caller
// lane: a UDP call of a Client from Dial, in the clear, without
// interceptors (their per-attempt hooks and a DialService's failover live
// on the loop).
func (c *Client) laneEligible() bool {
	return c.svc == nil && c.seal == nil && len(c.cfg.interceptors) == 0 && !c.ep.key.tcp && c.eng.cfg.callerLanes > 0
}

// laneCall runs a prepared call on lane ln from start to end: it sends
// the copies (the retransmission timeouts and ATTEMPT/DEADLINE as on the
// loop), reads the reply, keeps the endpoint's counters and RTT estimate,
// and returns the result as Call does. The call is the caller's
// throughout. taken is false when the lane could not be pointed at the
// endpoint (connect(2) failed: no route, say): nothing was sent, and the
// call goes through the loop, whose sockets handle that as they do.
func (c *Client) laneCall(ctx context.Context, call *Call, ln *callerLane) (reply Reply, err error, taken bool) {
	ep := call.ep
	defer c.eng.lanes.put(ln, ep)
	if c.closed.Load() {
		return Reply{}, ErrClientClosed, true
	}
	if ln.connect(ep) != nil {
		return Reply{}, nil, false
	}
	c.eng.lanes.calls.Add(1)
	ep.requests.Add(1)
	// Counted apart from the loop's calls: the loop lets go of a
	// forgotten endpoint when its own last call ends.
	ep.laneInflight.Add(1)
	defer ep.laneInflight.Add(-1)
	reply, err = c.laneRun(ctx, call, ln)
	return reply, err, true
}

func (c *Client) laneRun(ctx context.Context, call *Call, ln *callerLane) (Reply, error) {
	ep := call.ep
	call.rtoNs = ep.rto(&c.cfg)
	// Only the first wait of the call spins (WithCallerSpin, autoSpin).
	spin := c.eng.cfg.callerSpin
	if spin < 0 {
		spin = autoSpin(ep)
	}
	for {
		var left time.Duration
		if !call.deadline.IsZero() {
			if left = time.Until(call.deadline); left <= 0 {
				return Reply{}, c.callErrorOn(call, errDeadline)
			}
			call.frame.SetDeadline(left)
		}
		call.attempts++
		if call.attempts > 1 {
			call.frame.SetAttempt(uint8(min(call.attempts-1, 255)))
		}
		sent := engine.Mono()
		if errno, unreachable := ln.send(call.frame, call.id); errno != 0 {
			// Lost, as a send the loop's kernel refused: noted, and the
			// retransmission timer carries on — unless an ICMP said an
			// earlier copy of this call could not reach the server.
			ep.noteSocketError(errno)
			if call.oneway || unreachable {
				return Reply{}, c.callErrorOn(call, errno)
			}
		}
		if call.oneway {
			return Reply{}, nil
		}
		due := sent + call.rtoNs
		if left > 0 {
			due = min(due, sent+int64(left)+1)
		}
		f, err, resend := c.laneWait(ctx, call, ln, due, sent, sent+int64(spin))
		spin = 0
		switch {
		case err != nil:
			return Reply{}, err
		case resend:
			ep.retransmits.Add(1)
			continue
		case f != nil:
			return replyOf(f, call.buf)
		}
		// The retransmission timeout passed without a reply.
		if err := c.timedOut(call); err != nil {
			return Reply{}, c.callErrorOn(call, err)
		}
		ep.retransmits.Add(1)
	}
}

// laneWait reads the lane until the reply to call comes (f), until due
// (all nil: retransmit, or give up), or until the call must end (err). A
// BAD_FRAME to the extension block strips the block and asks for a resend
// at once. It spins on non-blocking reads until spinUntil, then blocks in
// slices of at most laneSlice.
func (c *Client) laneWait(ctx context.Context, call *Call, ln *callerLane, due, sent, spinUntil int64) (f proto.Frame, err error, resend bool) {
	ep := call.ep
	for {
		now := engine.Mono()
		if c.closed.Load() || c.eng.lanes.closed.Load() {
			return nil, ErrClientClosed, false
		}
		if err := ctx.Err(); err != nil {
			return nil, c.callErrorOn(call, err), false
		}
		if now >= due {
			return nil, nil, false
		}
		flags := 0
		if now < spinUntil {
			flags = unix.MSG_DONTWAIT
		} else {
			if err := ln.setTimeout(time.Duration(due - now)); err != nil {
				return nil, c.callErrorOn(call, fmt.Errorf("SO_RCVTIMEO: %w", err)), false
			}
		}
		n, errno := recvFrom(ln.fd, ln.buf, flags)
		switch errno {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			continue // the slice (or a spin's poll) ended empty
		default:
			ep.noteSocketError(errno)
			if e := ln.dropErrors(call.id); e != 0 {
				// The server's port (or host) is not there: end the call
				// now rather than retransmitting for seconds. (An ICMP
				// for an earlier call's late copy says nothing of it.)
				return nil, c.callErrorOn(call, e), false
			}
			continue
		}
		if n > len(ln.buf)-1 {
			ep.tooLarge.Add(1)
			if id, ok := replyID(ln.buf); ok && id == call.id {
				return nil, c.callErrorOn(call, fmt.Errorf("%w: room for %d bytes (see WithReceiveBuffers)",
					ErrReplyTooLarge, len(ln.buf)-1)), false
			}
			continue
		}
		r, perr := proto.Parse(ln.buf[:n])
		if perr != nil {
			ep.malformed.Add(1)
			continue
		}
		if r.RequestID() != call.id {
			ep.duplicates.Add(1) // a late copy's reply of an earlier call
			continue
		}
		if !ep.accept(call, r) {
			continue
		}
		if r.Status() == proto.StatusBadFrame && call.frame.HasExt() && !call.stripped {
			ep.noExt.Store(true) // an old server: see onReply
			if stripped, err := proto.StripExt(call.frame, call.frame); err == nil {
				call.frame, call.stripped = stripped, true
				return nil, nil, true
			}
		}
		ep.replies.Add(1)
		if call.attempts == 1 && !call.stripped {
			ep.sample(engine.Mono() - sent) // Karn: only copies that were never resent
		}
		return r, nil, false
	}
}

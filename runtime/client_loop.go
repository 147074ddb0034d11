package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// endpoint is one server in an engine's table: its address, its
// round-trip estimate and counters. The loop that owns it and the callers
// on caller lanes write the estimate and the counters; anyone may read
// them.
type endpoint struct {
	key  endpointKey
	loop *clientLoop
	refs int // Clients using it, under Engine.mu

	noExt atomic.Bool // the server answered BAD_FRAME to an extension block
	// rttMu orders the samples of the loop and of caller lanes (sample
	// reads and writes both halves of the estimate).
	rttMu    sync.Mutex
	srttNs   atomic.Int64
	rttvarNs atomic.Int64
	inflight atomic.Int64 // the loop's calls
	// laneInflight counts the calls on caller lanes (client_lane.go).
	laneInflight  atomic.Int64
	lastSocketErr atomic.Pointer[error]
	requests      atomic.Uint64
	retransmits   atomic.Uint64
	replies       atomic.Uint64
	duplicates    atomic.Uint64
	malformed     atomic.Uint64
	tooLarge      atomic.Uint64
	socketErrs    atomic.Uint64
	timeouts      atomic.Uint64
	unsealed      atomic.Uint64
	unopened      atomic.Uint64

	tcp *tcpClientConn // the stream transport's connection, loop-owned
	// forgotten: no Client uses the endpoint any more (opForget), but
	// calls to it were still in flight; the loop lets go of it when the
	// last of them ends. Loop-owned.
	forgotten bool

	name []byte // the address as a struct sockaddr, for direct sends
}

func newEndpoint(key endpointKey, cl *clientLoop) *endpoint {
	ep := &endpoint{key: key, loop: cl, name: make([]byte, unix.SizeofSockaddrInet6)}
	ep.name = ep.name[:uring.PutSockaddr(ep.name, key.addr)]
	return ep
}

func (ep *endpoint) transport() string {
	if ep.key.tcp {
		return "tcp"
	}
	return "udp"
}

// maxPayload is the largest request payload the endpoint's transport
// carries, with room for the extension block.
func (ep *endpoint) maxPayload() int {
	switch {
	case ep.key.tcp:
		return proto.MaxPayload - extRoom
	case ep.key.addr.Addr().Is4():
		return proto.MaxPayloadUDP4 - extRoom
	}
	return proto.MaxPayloadUDP6 - extRoom
}

func (ep *endpoint) stats() ClientStats {
	return ClientStats{
		Requests: ep.requests.Load(), Retransmits: ep.retransmits.Load(), Replies: ep.replies.Load(),
		Duplicates: ep.duplicates.Load(), Malformed: ep.malformed.Load(), TooLarge: ep.tooLarge.Load(),
		SocketErrs: ep.socketErrs.Load(), Timeouts: ep.timeouts.Load(), InFlight: ep.inflight.Load() + ep.laneInflight.Load(),
		Unsealed: ep.unsealed.Load(), Unopened: ep.unopened.Load(),
		SRTT: time.Duration(ep.srttNs.Load()), RTTVar: time.Duration(ep.rttvarNs.Load()),
	}
}

// sample feeds one round-trip time into the estimate (RFC 6298 §2: the
// first sample sets SRTT = R, RTTVAR = R/2; then RTTVAR ← ¾·RTTVAR +
// ¼·|SRTT − R| and SRTT ← ⅞·SRTT + ⅛·R).
func (ep *endpoint) sample(rttNs int64) {
	ep.rttMu.Lock()
	defer ep.rttMu.Unlock()
	srtt := ep.srttNs.Load()
	if srtt == 0 {
		ep.srttNs.Store(rttNs)
		ep.rttvarNs.Store(rttNs / 2)
		return
	}
	dev := srtt - rttNs
	if dev < 0 {
		dev = -dev
	}
	ep.rttvarNs.Store((3*ep.rttvarNs.Load() + dev) / 4)
	ep.srttNs.Store((7*srtt + rttNs) / 8)
}

// rto is the retransmission timeout of a call's first copy: SRTT +
// 4·RTTVAR once measured (RFC 6298 §2.3, with our clock granularity of
// 1 µs folded into the floor), the initial one before; bounded by
// [minRTO, maxRTO].
func (ep *endpoint) rto(cfg *clientConfig) int64 {
	srtt := ep.srttNs.Load()
	if srtt == 0 {
		return int64(cfg.initialRTO)
	}
	return min(max(srtt+4*ep.rttvarNs.Load(), int64(cfg.minRTO)), int64(cfg.maxRTO))
}

// accept reports whether f, the reply whose id matched call, is of the
// kind call waits for (counting it malformed when not), and then clears
// the endpoint's last socket error: the endpoint answers, so whatever its
// socket reported before is over and must not be blamed for a later
// call's failure.
func (ep *endpoint) accept(call *Call, f proto.Frame) bool {
	want := proto.KindResponse
	if call.kind == proto.KindPing {
		want = proto.KindPong
	}
	if f.Kind() != want {
		ep.malformed.Add(1)
		return false
	}
	if ep.lastSocketErr.Load() != nil {
		ep.lastSocketErr.Store(nil)
	}
	return true
}

func (ep *endpoint) noteSocketError(err error) {
	ep.socketErrs.Add(1)
	ep.lastSocketErr.Store(&err) // escapes only here, on the error path
}

// opKind is what an operation queued for a client loop asks.
type opKind uint8

const (
	opCall        opKind = iota // start call
	opCancel                    // end call id (with err), or forget it (the caller left)
	opCloseClient               // fail every call of client, then signal done
	opForget                    // the endpoint has no Client any more
	opDirectDone                // the caller's own first copy of call is over (err: it failed)
)

type loopOp struct {
	kind   opKind
	call   *Call
	id     uint64
	err    error
	ep     *endpoint
	client *Client
	done   chan struct{}
}

// clientLoop is one engine loop and the queue through which callers reach
// it.
type clientLoop struct {
	e    *Engine
	idx  int
	loop *engine.Loop
	src  *clientSource

	mu     sync.Mutex
	ops    []loopOp
	closed bool
	asleep atomic.Bool // set by the loop before it sleeps
	// directs counts the callers sending a first copy themselves (from
	// the loop's sockets, from a call the loop owns): added under mu with
	// the call's opCall while the loop is open, done once the caller no
	// longer touches the call or the socket. Cleanup waits for it.
	directs sync.WaitGroup

	delayed, undelivered atomic.Uint64
	local4, local6       netip.AddrPort
	// addrs is how many UDP endpoints the loop's table (byAddr) holds,
	// tcpConns how many TCP connections it has open; the loop writes
	// them, tests read them.
	addrs, tcpConns atomic.Int64
}

func newClientLoop(e *Engine, idx, core int, warn *engine.Warnings) (*clientLoop, error) {
	cl := &clientLoop{e: e, idx: idx}
	l, err := engine.NewLoop(engine.LoopConfig{Index: idx, Queue: idx, Core: core, SQEntries: 1024, CQEntries: 4096,
		BusyPoll: e.cfg.busyPoll, IdleTimeout: e.cfg.idleTimeout, EnterEvery: 1, Warn: warn}, e.pool)
	if err != nil {
		return nil, err
	}
	cl.loop = l
	// The sockets are made here, on the caller's thread, so they live in
	// the network namespace of whoever made the engine.
	src, err := newClientSource(cl)
	if err != nil {
		l.Discard()
		return nil, err
	}
	cl.src = src
	l.Add(src)
	return cl, nil
}

// local returns the address of the engine socket that calls ep.
func (cl *clientLoop) local(ep *endpoint) *netip.AddrPort {
	if ep.key.addr.Addr().Is4() {
		return &cl.local4
	}
	return &cl.local6
}

// startCall hands call to the loop. When the loop is asleep the caller
// sends the first copy itself from the loop's socket, so the request
// leaves at once while the loop wakes: the wakeup then overlaps the round
// trip instead of preceding it. The loop keeps the timers, the
// retransmissions and the reply either way; a UDP sendto is atomic, so
// the caller's copy and the loop's never interleave.
//
// The loop owns the call from its opCall on, but while the caller's copy
// is being sent (call.directPending) it neither hands the call back nor
// recycles it, resends it or rewrites its frame: the caller still reads
// them. The caller tells it when it is done, whatever the outcome, with
// opDirectDone, and touches the call no more.
func (cl *clientLoop) startCall(call *Call) bool {
	ep := call.ep
	direct := !ep.key.tcp && len(ep.name) > 0 && cl.asleep.Load()
	if direct {
		if !call.deadline.IsZero() {
			call.frame.SetDeadline(time.Until(call.deadline))
		}
		call.directNs = max(cl.src.now(), 1)
		call.directPending = true
	}
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		call.directPending = false // the caller's again
		return false
	}
	cl.ops = append(cl.ops, loopOp{kind: opCall, call: call})
	if direct {
		cl.directs.Add(1)
	}
	cl.mu.Unlock()
	if direct {
		fd := cl.src.fd4
		if !ep.key.addr.Addr().Is4() {
			fd = cl.src.fd6
		}
		data, err := []byte(call.frame), error(nil)
		if call.seal != nil {
			// The loop's own half is the loop's: the caller seals with the
			// engine's callers' half, under its lock. The loop does not
			// touch sealBuf while the copy is pending.
			data, err = call.client.seal.sealDirect(call.sealBuf[:0], call.frame, ep.key.addr)
		}
		if err == nil {
			err = sendto(fd, data, ep.name)
		}
		// Queued after the call's opCall. It fails only once the loop is
		// closing, and Cleanup then waits for directs instead.
		cl.enqueue(loopOp{kind: opDirectDone, call: call, err: err})
		cl.directs.Done()
	}
	cl.wakeIfAsleep()
	return true
}

// push queues op for the loop and wakes it if it sleeps; false once the
// loop is closed.
func (cl *clientLoop) push(op loopOp) bool {
	if !cl.enqueue(op) {
		return false
	}
	cl.wakeIfAsleep()
	return true
}

func (cl *clientLoop) enqueue(op loopOp) bool {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return false
	}
	cl.ops = append(cl.ops, op)
	cl.mu.Unlock()
	return true
}

func (cl *clientLoop) wakeIfAsleep() {
	if cl.asleep.Load() && cl.asleep.CompareAndSwap(true, false) {
		cl.loop.Wake()
	}
}

// pushWait queues op and waits until the loop has carried it out (at
// once when the loop is gone).
func (cl *clientLoop) pushWait(op loopOp) {
	op.done = make(chan struct{})
	if !cl.push(op) {
		return
	}
	select {
	case <-op.done:
	case <-cl.loop.Exited():
	}
}

// close makes the loop fail every call and exit.
func (cl *clientLoop) close() {
	cl.mu.Lock()
	cl.closed = true
	cl.mu.Unlock()
	cl.loop.RequestStop()
}

// Sizes of a client loop.
const (
	clientSendSlots = 4096
	clientBatch     = 256
)

// user_data kinds of the client source.
const (
	cudRecv4 uint64 = 0
	cudRecv6 uint64 = 1
	cudSend  uint64 = 1 << 40 // | slot
	cudTCP   uint64 = 2 << 40 // | tcp op
	cudKind  uint64 = 0xff << 40
)

// clientSource is the engine.Source of a client loop: it sends calls from
// the engine's unconnected UDP sockets, matches replies, retransmits and
// times out, and delivers completions without ever blocking.
type clientSource struct {
	cl   *clientLoop
	l    *engine.Loop
	tag  engine.Tag
	warn *engine.Warnings
	c    *engine.LoopCounters

	fd4, fd6     int
	recv4, recv6 sockpath.Receiver
	send         sockpath.Sender
	slotCall     []*Call
	calls        map[uint64]*Call
	byAddr       map[netip.AddrPort]*endpoint // UDP endpoints with calls, for ICMP errors
	timers       callHeap
	ops          []loopOp
	overflow     []*Call // completions whose Done channel was full
	waitSend     []*Call // calls that found no free send slot
	errBuf, oob  []byte
	tcp          tcpClients
	clock        time.Time // the loop's time origin
	closing      bool
	cleaning     bool // in Cleanup: the ring is gone, tcp.cleanup closes the connections
	closedClient []*Client
	delivered    bool
	taking       bool
	// result is where the loop reports an attempt's end (report): one at
	// a time, so one suffices, and a pointer to it escapes nothing.
	result AttemptResult
}

func newClientSource(cl *clientLoop) (*clientSource, error) {
	s := &clientSource{cl: cl, fd4: -1, fd6: -1, calls: map[uint64]*Call{}, byAddr: map[netip.AddrPort]*endpoint{},
		clock: time.Now(), errBuf: make([]byte, 256), oob: make([]byte, 512)}
	var err error
	if s.fd4, cl.local4, err = openClientSocket(unix.AF_INET); err != nil {
		return nil, err
	}
	if s.fd6, cl.local6, err = openClientSocket(unix.AF_INET6); err != nil {
		sockpath.CloseFd(&s.fd4)
		return nil, err
	}
	return s, nil
}

// openClientSocket opens an unconnected UDP socket of family with
// IP_RECVERR, so ICMP errors (port unreachable) reach the error queue
// with the destination they concern.
func openClientSocket(family int) (int, netip.AddrPort, error) {
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("runtime: client socket: %w", err)
	}
	leak.Track(fd)
	fail := func(op string, err error) (int, netip.AddrPort, error) {
		sockpath.CloseFd(&fd)
		return -1, netip.AddrPort{}, fmt.Errorf("runtime: client socket %s: %w", op, err)
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if name, err := setRecvErr(fd, family); err != nil {
		return fail(name, err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if err := unix.Bind(fd, sa); err != nil {
		if family == unix.AF_INET6 && errors.Is(err, unix.EADDRNOTAVAIL) {
			// No IPv6 here: keep the socket unbound; IPv6 calls fail on send.
			return fd, netip.AddrPort{}, nil
		}
		return fail("bind", err)
	}
	local, err := sockpath.LocalAddr(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, local, nil
}

func (s *clientSource) now() int64 { return int64(time.Since(s.clock)) }

// Setup implements engine.Source.
func (s *clientSource) Setup(l *engine.Loop, tag engine.Tag) error {
	s.l, s.tag, s.warn, s.c = l, tag, l.Config().Warn, &l.Counters
	s.send.Init(clientSendSlots, 0)
	s.slotCall = make([]*Call, clientSendSlots)
	cfg := &s.cl.e.cfg
	if err := s.recv4.Setup(l.Ring(), s.fd4, l.BufferGroup(), cfg.recvBuffers, cfg.maxReply, tag.With(cudRecv4)); err != nil {
		return err
	}
	if err := s.recv6.Setup(l.Ring(), s.fd6, l.BufferGroup(), cfg.recvBuffers, cfg.maxReply, tag.With(cudRecv6)); err != nil {
		return err
	}
	return s.tcp.setup(s)
}

// Poll implements engine.Source: take queued operations, retransmit what
// is due, retry full sends and deliveries, re-arm the receives.
func (s *clientSource) Poll() bool {
	if s.cl.asleep.Load() {
		// Awake again, whether a caller woke the loop (and cleared it
		// already) or a completion or timer ended the sleep: callers must
		// not go on sending first copies themselves to an awake loop.
		s.cl.asleep.Store(false)
	}
	worked := s.takeOps()
	now := s.now()
	if len(s.timers) > 0 && s.timers[0].dueNs <= now {
		s.expire(now)
		worked = true
	}
	if len(s.waitSend) > 0 {
		s.retrySends(now)
	}
	if len(s.overflow) > 0 {
		s.retryDeliveries()
	}
	s.recv4.Publish()
	s.recv6.Publish()
	for _, r := range []*sockpath.Receiver{&s.recv4, &s.recv6} {
		if !r.Armed() && !s.l.Stopping() {
			if err := r.Arm(s.l.Ring()); err != nil {
				s.warn.CQEError(s.c, engine.CQERecv, s.l.Config().Queue, err)
			}
		}
	}
	s.tcp.poll()
	return worked
}

// Idle implements engine.Source: it tells callers to wake the loop, then
// looks once more for work they queued meanwhile; the loop sleeps until
// the next timer at most, and does not spin while no call is outstanding.
func (s *clientSource) Idle() (bool, time.Duration, error) {
	if s.delivered {
		s.delivered = false
		goruntime.Gosched()
	}
	s.cl.asleep.Store(true)
	s.cl.mu.Lock()
	pending := len(s.cl.ops) > 0
	s.cl.mu.Unlock()
	if pending || len(s.overflow) > 0 && s.deliverable() {
		s.cl.asleep.Store(false)
		return true, 0, nil
	}
	var sleep time.Duration
	if len(s.timers) > 0 {
		sleep = max(time.Duration(s.timers[0].dueNs-s.now()), time.Microsecond)
	}
	if len(s.overflow) > 0 {
		sleep = min(max(sleep, 0), time.Millisecond) // look at full channels again soon
		if sleep == 0 {
			sleep = time.Millisecond
		}
	}
	return false, sleep, nil
}

func (s *clientSource) deliverable() bool {
	for _, call := range s.overflow {
		if len(call.Done) < cap(call.Done) {
			return true
		}
	}
	return false
}

// takeOps carries out what callers queued. It may be reached again from
// within (a reply matched while starting a call); the inner call does
// nothing.
func (s *clientSource) takeOps() bool {
	if s.taking {
		return false
	}
	s.taking = true
	defer func() { s.taking = false }()
	cl := s.cl
	cl.mu.Lock()
	ops := cl.ops
	cl.ops = s.ops[:0]
	s.ops = ops
	cl.mu.Unlock()
	if len(ops) == 0 {
		return false
	}
	now := s.now()
	for i := range ops {
		op := &ops[i]
		switch op.kind {
		case opCall:
			s.start(op.call, now)
		case opCancel:
			if call := s.calls[op.id]; call != nil {
				if op.err != nil {
					if errors.Is(op.err, context.DeadlineExceeded) && call.attempts > 0 && !call.finished &&
						(len(call.client.cfg.interceptors) > 0 || call.sc != nil) {
						// The deadline, seen by the caller first: for the
						// interceptors and the balancer it is a timeout.
						s.report(call, AttemptResult{Err: ErrNoReply})
					}
					s.fail(call, op.err)
				} else if call.state.Load() == callAbandoned {
					s.fail(call, nil) // the caller left: recycle it
				}
			}
		case opCloseClient:
			s.closeClient(op.client)
			close(op.done)
		case opDirectDone:
			s.directDone(op.call, op.err, now)
		case opForget:
			op.ep.forgotten = true
			if op.ep.inflight.Load() == 0 {
				s.letGo(op.ep)
			} // else the end of its last call lets go of it (callEnded)
		}
		*op = loopOp{}
	}
	return true
}

// letGo removes a forgotten endpoint without calls from the loop: from
// the table by address, and over TCP its connection closes.
func (s *clientSource) letGo(ep *endpoint) {
	if s.byAddr[ep.key.addr] == ep {
		delete(s.byAddr, ep.key.addr)
		s.cl.addrs.Store(int64(len(s.byAddr)))
	}
	if ep.tcp != nil {
		s.tcp.drop(ep.tcp, errors.New("endpoint closed"))
	}
}

// callEnded counts one call fewer in flight to ep, and lets go of ep
// when that was the last call to a forgotten endpoint.
func (s *clientSource) callEnded(ep *endpoint) {
	if ep.inflight.Add(-1) == 0 && ep.forgotten && !s.cleaning {
		s.letGo(ep)
	}
}

// knowAddr puts ep in the table by address, through which replies and
// ICMP errors find it.
func (s *clientSource) knowAddr(ep *endpoint) {
	s.byAddr[ep.key.addr] = ep
	s.cl.addrs.Store(int64(len(s.byAddr)))
}

// directDone takes the end of the caller's own first copy of call (err:
// it failed): only now may the loop hand the call back or recycle it,
// resend it, or rewrite its frame.
func (s *clientSource) directDone(call *Call, err error, now int64) {
	call.directPending = false
	switch {
	case s.calls[call.id] != call:
		// Abandoned before the loop took it: start left it to us.
		call.endTrace(0, context.Canceled)
		call.client.putCall(call)
	case call.finished:
		s.release(call) // it ended meanwhile; release waited for this
	case err != nil:
		// The kernel refused the caller's copy: the loop sends it, unless
		// a retransmission went (or waits to go) already.
		if call.attempts == 1 && call.sending == 0 && !call.waitingSlot {
			call.attempts = 0
			if s.transmit(call, now) {
				s.timers.fix(call)
			}
		}
	case call.oneway:
		s.complete(call, nil, 0) // sent is all a oneway call waits for
	}
}

// start registers a new call and sends its first copy.
func (s *clientSource) start(call *Call, now int64) {
	if call.state.Load() == callAbandoned {
		if call.directPending {
			return // its caller still sends it: directDone recycles it
		}
		call.endTrace(0, context.Canceled)
		call.client.putCall(call) // the caller gave up before it was ever sent
		return
	}
	ep := call.ep
	s.calls[call.id] = call
	ep.inflight.Add(1)
	if call.client.closed.Load() {
		// Queued by a Go or Call racing Close, after Close's opCloseClient.
		s.fail(call, ErrClientClosed)
		return
	}
	if call.ctx != nil {
		if err := call.ctx.Err(); err != nil {
			s.fail(call, call.client.callErrorOn(call, err))
			return
		}
	}
	ep.requests.Add(1)
	if svc := call.client.svc; svc != nil {
		svc.budget.call(time.Now())
	}
	call.rtoNs = ep.rto(&call.client.cfg)
	if ep.key.tcp {
		s.tcp.send(call, now)
		return
	}
	s.knowAddr(ep)
	if call.directPending {
		// The caller sends the first copy itself (the loop was asleep).
		call.attempts = 1
		call.sentNs = call.directNs
		call.dueNs = call.sentNs + call.rtoNs
		if !call.deadline.IsZero() {
			call.dueNs = min(call.dueNs, now+int64(time.Until(call.deadline))+1)
		}
		s.timers.push(call)
		return
	}
	if s.transmit(call, now) {
		s.timers.push(call)
	}
}

// transmit sends a copy of call (its ATTEMPT and DEADLINE patched for this
// copy) and sets when to retransmit. It reports whether the call is still
// in flight: false when it ended (its deadline had passed), after which
// the call may already be its caller's again and must not be touched.
func (s *clientSource) transmit(call *Call, now int64) bool {
	var left time.Duration
	if !call.deadline.IsZero() {
		if left = time.Until(call.deadline); left <= 0 {
			s.giveUp(call, errDeadline)
			return false
		}
	}
	call.attempts++
	call.sentNs = now
	call.dueNs = now + call.rtoNs
	if !call.deadline.IsZero() {
		call.dueNs = min(call.dueNs, now+int64(left)+1)
	}
	if call.directPending || (call.sending > 0 && (call.seal != nil || call.stripWanted)) {
		// The last copy is still being sent from the bytes this one would
		// be written into (the caller's own first copy, a sealed copy
		// whose SENDMSG has not completed, or a frame whose extension
		// block is to be cut): wait for it, as for a slot.
		s.waitSend = append(s.waitSend, call)
		call.waitingSlot = true
		return true
	}
	if call.stripWanted {
		s.strip(call) // no send of the frame is in flight any more
	}
	slot, ok := s.send.Get()
	if !ok {
		s.waitSend = append(s.waitSend, call)
		call.waitingSlot = true
		return true
	}
	if !call.deadline.IsZero() {
		call.frame.SetDeadline(left)
	}
	if call.attempts > 1 {
		call.frame.SetAttempt(uint8(min(call.attempts-1, 255)))
	}
	data := []byte(call.frame)
	if call.seal != nil {
		sealed, err := call.seal.SealRequest(call.sealBuf[:0], call.frame, call.ep.key.addr)
		if err != nil {
			s.send.Put(slot)
			s.giveUp(call, fmt.Errorf("sealing the request: %w", err))
			return false
		}
		data = sealed
	}
	fd := s.fd4
	if !call.ep.key.addr.Addr().Is4() {
		fd = s.fd6
	}
	if err := s.send.Send(s.l.Ring(), fd, slot, data, call.ep.key.addr, s.tag.With(cudSend|uint64(slot))); err != nil {
		s.send.Put(slot)
		s.waitSend = append(s.waitSend, call)
		call.waitingSlot = true
		return true
	}
	s.slotCall[slot] = call
	call.sending++
	return true
}

// strip cuts the extension block out of call's frame (its server does
// not speak EXT) and reports whether the frame is, or will be, without
// it: while a send of the frame is in flight (a SENDMSG reading it, or
// its caller's own first copy) the bytes must not change, so the cut is
// only marked (stripWanted) and transmit makes it before the next copy.
func (s *clientSource) strip(call *Call) bool {
	if call.sending > 0 || call.directPending {
		call.stripWanted = true
		return true
	}
	call.stripWanted = false
	stripped, err := proto.StripExt(call.frame, call.frame)
	if err != nil {
		return false
	}
	call.frame, call.stripped = stripped, true
	return true
}

// retrySends sends the copies that found no free slot.
func (s *clientSource) retrySends(now int64) {
	waiting := s.waitSend
	s.waitSend = nil
	for _, call := range waiting {
		call.waitingSlot = false
		call.attempts-- // transmit counts it again
		if s.transmit(call, now) && call.heapIndex >= 0 {
			s.timers.fix(call)
		}
	}
}

// errDeadline is how a call ends when its context's deadline passes on
// the loop: the context's own error.
var errDeadline = context.DeadlineExceeded

// expire retransmits every call whose timeout passed, or ends it.
func (s *clientSource) expire(now int64) {
	for len(s.timers) > 0 && s.timers[0].dueNs <= now {
		call := s.timers[0]
		c := call.client
		if call.oneway {
			s.complete(call, nil, 0)
			continue
		}
		s.report(call, AttemptResult{Err: ErrNoReply})
		if !call.ep.key.tcp && s.failover(call, now) {
			continue
		}
		if err := c.timedOut(call); err != nil {
			s.giveUp(call, err)
			continue
		}
		if call.ep.key.tcp {
			// The stream is reliable: a timeout only counts toward giving up.
			call.attempts++
			call.dueNs = now + call.rtoNs
			s.timers.fix(call)
			continue
		}
		if err := c.before(call); err != nil {
			s.fail(call, err)
			continue
		}
		call.ep.retransmits.Add(1)
		if s.transmit(call, now) {
			s.timers.fix(call)
		}
	}
}

// timedOut is what the passing of call's retransmission timeout means,
// on the loop and on a caller lane alike: the cause that ends the call
// (its deadline passed, or its last copy went: counted as a timeout), or
// nil with its next timeout doubled (up to maxRTO).
func (c *Client) timedOut(call *Call) error {
	if !call.deadline.IsZero() && !time.Now().Before(call.deadline) {
		return errDeadline
	}
	if limit := c.cfg.maxAttempts; limit > 0 && call.attempts >= limit {
		call.ep.timeouts.Add(1)
		return ErrNoReply
	}
	call.rtoNs = min(call.rtoNs*2, int64(c.cfg.maxRTO))
	return nil
}

// giveUp fails call with cause, wrapped with its endpoint and attempts.
func (s *clientSource) giveUp(call *Call, cause error) {
	s.fail(call, call.client.callErrorOn(call, cause))
}

// fail ends call with err (ignored when the caller abandoned it; nil
// just recycles an abandoned call).
func (s *clientSource) fail(call *Call, err error) {
	s.timers.remove(call)
	if call.finished {
		return
	}
	call.finished = true
	if err != nil && call.state.CompareAndSwap(callPending, callCompleting) {
		call.Err = err
	}
	s.release(call)
}

// complete ends call with its reply f (nil for a oneway request, done once
// sent).
func (s *clientSource) complete(call *Call, f proto.Frame, rttNs int64) {
	s.timers.remove(call)
	call.finished = true
	if call.state.CompareAndSwap(callPending, callCompleting) && f != nil {
		// Only now may the loop write into the caller's buf: an abandoning
		// caller's CompareAndSwap has failed and it waits on Done.
		call.Reply, call.Err = replyOf(f, call.buf)
	}
	if f != nil && rttNs >= 0 && (len(call.client.cfg.interceptors) > 0 || call.sc != nil) {
		s.report(call, AttemptResult{Answered: true, Status: f.Status(), RTT: time.Duration(rttNs),
			ServiceTime: call.Reply.ServiceTime, RetryAfter: call.Reply.RetryAfter})
	}
	s.release(call)
}

// report is attemptEnded with r held in the loop's own result, so that
// handing its address to interceptors and balancers allocates nothing.
func (s *clientSource) report(call *Call, r AttemptResult) {
	s.result = r
	s.attemptEnded(call, &s.result)
}

// attemptEnded tells the interceptors and, for a DialService call, the
// balancer how the call's current attempt ended.
func (s *clientSource) attemptEnded(call *Call, r *AttemptResult) {
	call.client.after(call, r)
	if call.sc != nil {
		call.client.svc.balancer.Done(call.sc, r)
	}
}

// failover sends a DialService call whose attempt failed to another
// endpoint the picker chooses, within its deadline, its attempts and the
// service's retry budget, and reports whether it did (false: the caller
// goes on as without failover — retransmitting to the same endpoint, or
// failing).
func (s *clientSource) failover(call *Call, now int64) bool {
	c := call.client
	svc := c.svc
	if svc == nil || call.oneway || call.kind == proto.KindPing {
		return false
	}
	if !call.deadline.IsZero() && !time.Now().Before(call.deadline) {
		return false
	}
	if m := c.cfg.maxAttempts; m > 0 && call.attempts >= m {
		return false
	}
	call.pick.Attempt++
	call.pick.Failed = call.sc
	sc, err := svc.pick(&call.pick)
	if err != nil || sc == call.sc || sc.ep.loop != s.cl || sc.ep.key.tcp != call.ep.key.tcp ||
		(call.seal != nil && !call.seal.HasSession(sc.ep.key.addr)) {
		call.pick.Attempt--
		return false
	}
	if !svc.budget.allow(time.Now()) {
		call.pick.Attempt--
		return false
	}
	old := call.ep
	call.prevEp, call.ep, call.sc = old, sc.ep, sc
	sc.ep.inflight.Add(1)
	s.callEnded(old)
	svc.failovers.Add(1)
	if sc.ep.noExt.Load() && call.frame.HasExt() && !call.stripped {
		s.strip(call)
	}
	call.rtoNs = sc.ep.rto(&c.cfg)
	if err := c.before(call); err != nil {
		s.fail(call, err)
		return true
	}
	if sc.ep.key.tcp {
		s.timers.remove(call)
		s.tcp.send(call, now)
		return true
	}
	s.knowAddr(sc.ep)
	if s.transmit(call, now) && call.heapIndex >= 0 {
		s.timers.fix(call)
	}
	return true
}

// release hands a finished call over once no send of it is in flight: to
// its caller through Done, or back to the pool when the caller left.
func (s *clientSource) release(call *Call) {
	if call.sending > 0 || call.directPending {
		return // the last send's completion (or directDone) releases it
	}
	if _, ok := s.calls[call.id]; !ok {
		return // already released
	}
	delete(s.calls, call.id)
	if call.waitingSlot {
		for i, w := range s.waitSend {
			if w == call {
				s.waitSend = append(s.waitSend[:i], s.waitSend[i+1:]...)
				break
			}
		}
		call.waitingSlot = false
	}
	s.callEnded(call.ep)
	if call.stop != nil {
		call.stop()
		call.stop = nil
	}
	call.ctx = nil
	if call.state.Load() == callAbandoned {
		call.endTrace(0, context.Canceled)
		call.client.putCall(call)
		return
	}
	call.endTrace(call.Reply.Status, call.Err)
	s.deliver(call)
}

// deliver sends call on its Done channel without ever waiting: a full
// channel gets it later (overflow).
func (s *clientSource) deliver(call *Call) {
	s.delivered = true
	select {
	case call.Done <- call:
	default:
		s.cl.delayed.Add(1)
		s.overflow = append(s.overflow, call)
	}
}

func (s *clientSource) retryDeliveries() {
	kept := s.overflow[:0]
	for _, call := range s.overflow {
		select {
		case call.Done <- call:
		default:
			kept = append(kept, call)
		}
	}
	clear(s.overflow[len(kept):])
	s.overflow = kept
}

// Complete implements engine.Source.
func (s *clientSource) Complete(c *uring.CQE, data uint64) {
	switch data & cudKind {
	case cudSend:
		s.sent(uint32(data&^cudKind), c)
	case cudTCP:
		s.tcp.complete(c, data&^cudKind)
	default:
		fd, r := s.fd4, &s.recv4
		if data == cudRecv6 {
			fd, r = s.fd6, &s.recv6
		}
		d, ok, err := r.Complete(c)
		if err != nil {
			if c.NoBuffers() {
				s.c.Rearms.Add(1)
				return
			}
			s.socketError(fd, err)
			return
		}
		if ok {
			s.onDatagram(&d)
			r.Done(&d)
		}
	}
}

// socketError handles a receive that ended with an error: an ICMP error
// (IP_RECVERR) whose details wait in the socket's error queue.
func (s *clientSource) socketError(fd int, err error) {
	if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.EHOSTUNREACH) &&
		!errors.Is(err, unix.ENETUNREACH) && !errors.Is(err, unix.EHOSTDOWN) && !errors.Is(err, unix.EMSGSIZE) {
		s.warn.CQEError(s.c, engine.CQERecv, s.l.Config().Queue, err)
	}
	for i := 0; i < 64; i++ {
		n, oobn, _, from, rerr := unix.Recvmsg(fd, s.errBuf, s.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if rerr != nil {
			return // EAGAIN: the queue is empty
		}
		dst, ok := sockpath.AddrPortOf(from)
		errno := errnoOf(s.oob[:oobn])
		if !ok || errno == 0 {
			continue
		}
		// A call whose caller sent it before the loop took it from the
		// queue may be the one this error answers.
		s.takeOps()
		ep := s.byAddr[dst]
		if ep == nil {
			continue
		}
		ep.noteSocketError(errno)
		if id, ok := replyID(s.errBuf[:n]); ok {
			// The queue gives back the datagram the ICMP answers: one of
			// a call that ended already (a oneway request, a call that
			// was answered or given up) tells nothing of the calls in
			// flight, which may have gone out after the port opened.
			if call := s.calls[id]; call == nil || call.finished || call.ep != ep {
				continue
			}
		}
		if isUnreachable(errno) {
			// The server's port (or host) is not there: end its calls now
			// rather than retransmitting for seconds.
			now := s.now()
			for _, call := range s.calls {
				if call.ep == ep && !call.finished {
					s.report(call, AttemptResult{Err: errno})
					if !s.failover(call, now) {
						s.fail(call, call.client.callErrorOn(call, errno))
					}
				}
			}
		}
	}
}

// setRecvErr sets IP_RECVERR (IPV6_RECVERR) on a UDP socket of family,
// and names the option for an error.
func setRecvErr(fd, family int) (string, error) {
	if family == unix.AF_INET6 {
		return "IPV6_RECVERR", unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	}
	return "IP_RECVERR", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
}

// errnoOf reads ee_errno from an IP_RECVERR / IPV6_RECVERR control message.
func errnoOf(oob []byte) unix.Errno {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR) ||
			(m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
			if len(m.Data) >= 4 {
				return unix.Errno(binary.NativeEndian.Uint32(m.Data))
			}
		}
	}
	return 0
}

// onDatagram matches one received datagram to its call.
func (s *clientSource) onDatagram(d *sockpath.Datagram) {
	ep := s.byAddr[d.Peer]
	if ep == nil && s.takeOps() {
		// The first call to an endpoint, sent by its caller, may answer
		// before the loop has taken the call from its queue.
		ep = s.byAddr[d.Peer]
	}
	if ep == nil {
		return // from nobody we call
	}
	if d.Truncated {
		ep.tooLarge.Add(1)
		if id, ok := replyID(d.Payload); ok {
			if call := s.calls[id]; call != nil && !call.finished && call.ep == ep {
				s.fail(call, call.client.callErrorOn(call, fmt.Errorf("%w: room for %d bytes (see WithReceiveBuffers)",
					ErrReplyTooLarge, s.cl.e.cfg.maxReply)))
			}
		}
		return
	}
	f, err := proto.Parse(d.Payload)
	if isSealed(err) {
		s.onSealed(ep, d.Payload, d.Peer)
		return
	}
	if err != nil {
		ep.malformed.Add(1)
		return
	}
	s.onReply(ep, f, false)
}

// replyID reads the request id of what may be the start of a GWIR frame
// (a truncated reply: Parse would refuse it).
func replyID(p []byte) (uint64, bool) {
	if len(p) >= proto.HeaderLen && binary.BigEndian.Uint32(p) == proto.Magic && p[4] == proto.Version {
		return binary.BigEndian.Uint64(p[8:16]), true
	}
	return 0, false
}

// replyOf is the Reply (and its error) of reply frame f, its payload
// copied into buf.
func replyOf(f proto.Frame, buf []byte) (Reply, error) {
	r := Reply{Status: f.Status(), Payload: append(buf[:0], f.Payload()...)}
	r.ServiceTime, _ = f.ServiceTime()
	r.RetryAfter, _ = f.RetryAfter()
	if f.Kind() == proto.KindResponse && r.Status != proto.StatusOK {
		return r, &StatusError{Status: r.Status, Message: string(f.ErrorMessage())}
	}
	return r, nil
}

// isSealed reports whether err is Parse's verdict on a sealed frame.
func isSealed(err error) bool {
	pe, ok := err.(proto.Error)
	return ok && pe.Reason() == proto.ErrSealed
}

// onSealed opens a sealed reply from ep (received from from) with the
// sealer of the call its clear request id names, and completes the call.
// Nothing of it is believed before it opens.
func (s *clientSource) onSealed(ep *endpoint, p []byte, from netip.AddrPort) {
	id := binary.BigEndian.Uint64(p[8:16]) // Parse checked the header
	call := s.calls[id]
	if call == nil && s.takeOps() {
		call = s.calls[id] // as in onDatagram
	}
	if call == nil || call.finished || call.seal == nil {
		ep.duplicates.Add(1) // late, or for a call that was not sealed: nothing to open it with
		return
	}
	plain, _, err := call.seal.OpenReply(p, from)
	if err != nil {
		ep.unopened.Add(1)
		return
	}
	f, err := proto.Parse(plain)
	if err != nil {
		ep.malformed.Add(1)
		return
	}
	s.onReply(ep, f, true)
}

// onReply completes the call f answers; sealed says whether f came
// sealed (and opened).
func (s *clientSource) onReply(ep *endpoint, f proto.Frame, sealed bool) {
	call := s.calls[f.RequestID()]
	if call == nil && s.takeOps() {
		call = s.calls[f.RequestID()] // as in onDatagram
	}
	if call == nil || call.finished || (call.ep != ep && call.prevEp != ep) {
		ep.duplicates.Add(1)
		return
	}
	if call.seal != nil && !sealed {
		// Anyone can forge a clear reply (a BAD_FRAME from a server
		// without a sealer included): only a sealed one completes a
		// sealed call.
		ep.unsealed.Add(1)
		return
	}
	if !ep.accept(call, f) {
		return
	}
	if f.Status() == proto.StatusBadFrame && call.stripWanted {
		ep.duplicates.Add(1) // another copy's refusal of the block: the resend without it is on its way
		return
	}
	if f.Status() == proto.StatusBadFrame && call.frame.HasExt() && !call.stripped {
		// A server without EXT support: send it again without the block,
		// and to this endpoint never with one again. While a copy is
		// still being sent the cut waits for it, and so does the resend
		// (transmit).
		ep.noExt.Store(true)
		if s.strip(call) {
			call.ep.retransmits.Add(1)
			if call.ep.key.tcp {
				// On the endpoint's connection, as the first copy went.
				s.timers.remove(call)
				s.tcp.send(call, s.now())
			} else if s.transmit(call, s.now()) {
				s.timers.fix(call)
			}
			return
		}
	}
	ep.replies.Add(1)
	rtt := s.now() - call.sentNs
	if st := f.Status(); call.sc != nil && ep == call.ep && (st == proto.StatusOverloaded || st == proto.StatusRateLimited) {
		// The server refused it (busy, rate-limited, draining): another
		// endpoint may take it.
		r := AttemptResult{Answered: true, Status: st, RTT: time.Duration(rtt)}
		r.RetryAfter, _ = f.RetryAfter()
		r.ServiceTime, _ = f.ServiceTime()
		s.report(call, r)
		if s.failover(call, s.now()) {
			return
		}
		s.complete(call, f, -1)
		return
	}
	if call.attempts == 1 && !call.stripped {
		ep.sample(rtt) // Karn: only copies that were never resent
	}
	s.complete(call, f, rtt)
}

// sent handles a send completion.
func (s *clientSource) sent(slot uint32, c *uring.CQE) {
	call := s.slotCall[slot]
	s.slotCall[slot] = nil
	s.send.Put(slot)
	if call == nil {
		return
	}
	call.sending--
	if err := c.Err(); err != nil {
		switch {
		case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.EHOSTUNREACH),
			errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN):
			call.ep.noteSocketError(err) // transient: the retransmission timer tries again
		default:
			call.ep.noteSocketError(err)
			if !call.finished {
				s.fail(call, call.client.callErrorOn(call, fmt.Errorf("send: %w", err)))
				return
			}
		}
	} else if call.oneway && !call.finished {
		s.complete(call, nil, 0) // handed to the kernel: that is all a oneway call waits for
		return
	}
	if call.finished {
		s.release(call)
	}
}

// closeClient fails every call of c and drops its undelivered completions.
func (s *clientSource) closeClient(c *Client) {
	for _, call := range s.calls {
		if call.client == c && !call.finished {
			s.fail(call, ErrClientClosed)
		}
	}
	s.dropOverflow(c)
}

// dropOverflow forgets completions nobody received (of c, or all for nil).
func (s *clientSource) dropOverflow(c *Client) {
	kept := s.overflow[:0]
	for _, call := range s.overflow {
		if c == nil || call.client == c {
			s.cl.undelivered.Add(1)
			continue
		}
		kept = append(kept, call)
	}
	clear(s.overflow[len(kept):])
	s.overflow = kept
}

// JobDone implements engine.Source; client loops run no jobs.
func (s *clientSource) JobDone(j *engine.Job) { s.l.Pool().Release(j) }

// Cleanup implements engine.Source: after the ring is gone (no send in
// flight any more), every call still waiting fails with ErrClientClosed,
// queued ones too, and the sockets close.
func (s *clientSource) Cleanup() {
	cl := s.cl
	cl.mu.Lock()
	cl.closed = true
	ops := cl.ops
	cl.ops = nil
	cl.mu.Unlock()
	s.cleaning = true
	// Callers still sending first copies of their own from our sockets:
	// once they are done (their opDirectDone, queued or refused, is then
	// moot) the calls are ours alone and the sockets may close.
	cl.directs.Wait()
	var queued map[*Call]bool
	for _, op := range ops {
		if op.kind == opCall {
			if queued == nil {
				queued = map[*Call]bool{}
			}
			queued[op.call] = true
		}
	}
	for _, op := range ops {
		if op.kind == opDirectDone {
			call := op.call
			call.directPending = false
			if !queued[call] && s.calls[call.id] != call {
				call.endTrace(0, ErrClientClosed)
				call.client.putCall(call) // abandoned before the loop took it
			}
		}
	}
	for _, op := range ops {
		switch op.kind {
		case opCall:
			op.call.directPending = false
			op.call.endTrace(0, ErrClientClosed)
			if op.call.state.CompareAndSwap(callPending, callCompleting) {
				op.call.Err = ErrClientClosed
				op.call.deliverNow()
			} else {
				op.call.client.putCall(op.call)
			}
		case opCloseClient:
			close(op.done)
		}
	}
	for _, call := range s.calls {
		call.sending = 0
		call.directPending = false // its caller is done with it (directs)
		s.timers.remove(call)
		if !call.finished {
			call.finished = true
			if call.state.CompareAndSwap(callPending, callCompleting) {
				call.Err = ErrClientClosed
			}
		}
		s.release(call)
	}
	s.dropOverflow(nil)
	s.tcp.cleanup()
	sockpath.CloseFd(&s.fd4)
	sockpath.CloseFd(&s.fd6)
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

// fix restores the order after call's due time changed.
func (h *callHeap) fix(call *Call) {
	if call.heapIndex < 0 {
		return
	}
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

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// Client calls one GWIR server. It is a handle on an Engine (the
// process's default engine unless WithEngine says otherwise): calls go
// through the engine's loop that owns the server's endpoint, which sends
// them from the engine's sockets and matches the replies — or, for a
// synchronous UDP call while one of the engine's few caller lanes is free,
// run on the caller's own thread (see WithCallerLanes). Creating a Client
// costs no thread and no socket. It is safe for concurrent use.
//
// Delivery is at least once: a request without a reply is sent again,
// with the same request id and its ATTEMPT tag counting up, after a
// retransmission timeout derived from the endpoint's measured round-trip
// time (Jacobson/Karels: SRTT + 4·RTTVAR, doubled per retransmission,
// bounded; see WithRetransmission), so the server may run a request more
// than once. The first reply completes the call; later copies are
// counted as Duplicates. A context deadline travels to the server in the
// DEADLINE tag (the budget left at each transmission), and no copy is
// sent once it has passed.
type Client struct {
	eng    *Engine
	ep     *endpoint // the endpoint of a Client from Dial
	svc    *service  // the service of a Client from DialService
	cfg    clientConfig
	caller []byte
	seal   *clientSealing // WithClientSealer's halves on the engine's loops

	calls sync.Pool // *Call, reset

	closeOnce sync.Once
	// closed is set before Close queues its opCloseClient: calls made
	// after it fail at once, and the loop fails one that a racing Go or
	// Call queued after the opCloseClient.
	closed atomic.Bool
}

// Reply is the answer to a call.
type Reply struct {
	// Status is the response status (StatusOK unless the call returned a
	// *StatusError), or for Ping the PONG status.
	Status proto.Status
	// Payload is the response payload, copied into the buf given to Call or
	// Go (grown only when too small): it is the caller's and stays valid as
	// long as the caller keeps it.
	Payload []byte
	// ServiceTime is the server's own time for the request (its
	// SERVICE_TIME tag), 0 when it did not say.
	ServiceTime time.Duration
	// RetryAfter is the server's RETRY_AFTER hint, 0 when none.
	RetryAfter time.Duration
}

// Call is one call started by Go, net/rpc style. Its exported fields are
// the caller's to read once the Call arrived on Done; Release then gives
// it back to the Client for reuse.
type Call struct {
	Method string // as given to Go
	Reply  Reply  // the reply; Reply.Payload lies in the buf given to Go
	Err    error  // nil, a *StatusError, or why there was no reply (a *CallError)
	Done   chan *Call

	client    *Client
	ep        *endpoint
	state     atomic.Uint32 // callPending → callCompleting or callAbandoned
	id        uint64
	kind      proto.Kind
	oneway    bool
	methodID  uint32
	frame     proto.Frame // the encoded request, read by the kernel while sends are in flight
	buf       []byte      // the caller's reply buffer
	deadline  time.Time
	ctx       context.Context
	stop      func() bool     // stops the context.AfterFunc of an async call
	ownCh     chan *Call      // the Done channel of synchronous calls, reused
	attempt   Attempt         // what interceptors see
	traceCtx  context.Context // what the CallTracer's StartCall returned (nil: not traced)
	traceFrom time.Time       // when StartCall ran
	sc        *SubConn        // the picked endpoint of a DialService call
	prevEp    *endpoint       // the endpoint a failed-over call went to before
	pick      PickInfo
	seal      ClientLoopSealer // the call's loop's sealer half; nil for a clear call
	sealBuf   []byte           // where each copy is sealed (kept across reuses)

	// Owned by the loop while the call is in flight.
	sending  int   // SEND operations not completed yet
	attempts int   // copies sent
	rtoNs    int64 // current retransmission timeout
	dueNs    int64 // when to retransmit (or give up), on the loop's clock
	sentNs   int64 // when the last copy went out
	directNs int64 // when the caller sent the first copy itself
	// directPending: the caller sends the first copy itself and has not
	// said it is done (opDirectDone); set by the caller before the loop
	// owns the call, cleared by the loop.
	directPending bool
	waitingSlot   bool // in the loop's waitSend list
	heapIndex     int  // position in the loop's timer heap, -1 when not in it
	finished      bool // the result is decided; waiting only for sends
	stripped      bool // resent without its extension block (an old server)
	stripWanted   bool // to be stripped once no send of the frame is in flight
}

const (
	callPending    uint32 = iota // the loop may complete it
	callCompleting               // the loop owns it and will deliver it
	callAbandoned                // the caller stopped waiting; the loop recycles it
)

// ClientStats are counters of a Client's endpoint since it was first
// dialled (shared by every Client of the same endpoint and engine).
type ClientStats struct {
	Requests    uint64 // calls and pings sent (first copies)
	Retransmits uint64 // further copies sent
	Replies     uint64 // replies that completed a call
	Duplicates  uint64 // replies whose request id matched no call still waiting
	Malformed   uint64 // datagrams from the endpoint that were not a valid reply
	TooLarge    uint64 // replies larger than the receive buffers
	SocketErrs  uint64 // errors the socket reported (ICMP unreachable …)
	Timeouts    uint64 // calls that got no reply after their last copy
	// Unsealed counts clear replies to sealed calls (WithClientSealer),
	// ignored: anyone who can send to the client can forge one. Unopened
	// counts sealed replies the sealer refused (forged, replayed,
	// altered), ignored too; the sealer keeps why.
	Unsealed, Unopened uint64
	// InFlight is the number of calls waiting for a reply now; SRTT and
	// RTTVar the endpoint's smoothed round-trip time and its variation
	// (0 before the first sample).
	InFlight     int64
	SRTT, RTTVar time.Duration
}

// Dial returns a Client calling the GWIR server at address ("IP:PORT" or
// "host:port") over network "udp", "udp4", "udp6" (datagrams) or "tcp",
// "tcp4", "tcp6" (the stream transport, for servers started WithTCP).
// It starts the default engine of the caller's network namespace on
// first use (see DefaultEngine, and NewEngine for its errors).
func Dial(network, address string, opts ...ClientOption) (*Client, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	tcp, remote, err := resolveTarget(network, address)
	if err != nil {
		return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
	}
	eng := cfg.engine
	if eng == nil {
		if eng, err = DefaultEngine(); err != nil {
			return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
		}
	}
	ep, err := eng.acquire(endpointKey{tcp: tcp, addr: remote})
	if err != nil {
		return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
	}
	c := &Client{eng: eng, ep: ep, cfg: cfg}
	if cfg.sealer != nil {
		if c.seal, err = eng.sealing(cfg.sealer); err != nil {
			eng.release(ep)
			return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
		}
	}
	if cfg.caller != "" {
		c.caller = []byte(cfg.caller)
	}
	c.calls.New = func() any { return &Call{client: c, ownCh: make(chan *Call, 1), heapIndex: -1} }
	return c, nil
}

func resolveTarget(network, address string) (tcp bool, ap netip.AddrPort, err error) {
	switch network {
	case "udp", "udp4", "udp6":
	case "tcp", "tcp4", "tcp6":
		tcp = true
	default:
		return false, ap, fmt.Errorf("network %q not supported (want udp, udp4, udp6, tcp, tcp4 or tcp6)", network)
	}
	ap, err = netip.ParseAddrPort(address)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp"+network[3:], address)
		if rerr != nil {
			return tcp, ap, rerr
		}
		ap = ua.AddrPort()
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsValid() || ap.Port() == 0 {
		return tcp, ap, fmt.Errorf("address %q: need an IP and a non-zero port", address)
	}
	if v := network[3:]; (v == "4" && !ap.Addr().Is4()) || (v == "6" && ap.Addr().Is4()) {
		return tcp, ap, fmt.Errorf("address %v is not a %s address", ap.Addr(), network)
	}
	return tcp, ap, nil
}

// RemoteAddr returns the server's address (the zero value for a Client
// from DialService, which calls many).
func (c *Client) RemoteAddr() netip.AddrPort {
	if c.ep == nil {
		return netip.AddrPort{}
	}
	return c.ep.key.addr
}

// LocalAddr returns the address of the engine loop's socket that calls
// the server (the zero value for a Client from DialService). A
// synchronous call on a caller lane (WithCallerLanes) goes from that
// lane's own port instead.
func (c *Client) LocalAddr() netip.AddrPort {
	if c.ep == nil {
		return netip.AddrPort{}
	}
	return *c.ep.loop.local(c.ep)
}

// Stats returns the counters of the Client's endpoint (first reading the
// late reply copies queued on idle caller lanes, so that they count as
// Duplicates); for a Client from
// DialService, the sums over the service's endpoints now (SRTT and RTTVar
// are then the largest).
func (c *Client) Stats() ClientStats {
	if c.svc == nil {
		c.eng.lanes.drainIdle(c.ep)
		return c.ep.stats()
	}
	var st ClientStats
	for _, sc := range c.svc.endpoints() {
		e := sc.ep.stats()
		st.Requests += e.Requests
		st.Retransmits += e.Retransmits
		st.Replies += e.Replies
		st.Duplicates += e.Duplicates
		st.Malformed += e.Malformed
		st.TooLarge += e.TooLarge
		st.SocketErrs += e.SocketErrs
		st.Timeouts += e.Timeouts
		st.Unsealed += e.Unsealed
		st.Unopened += e.Unopened
		st.InFlight += e.InFlight
		st.SRTT = max(st.SRTT, e.SRTT)
		st.RTTVar = max(st.RTTVar, e.RTTVar)
	}
	return st
}

// Endpoints returns the SubConns a Client from DialService holds now (nil
// for a Client from Dial).
func (c *Client) Endpoints() []*SubConn {
	if c.svc == nil {
		return nil
	}
	return c.svc.endpoints()
}

// Call calls method ("pkg.Service/Method") with payload (protobuf
// wire-format fields) and waits for the reply, whose payload it copies into
// buf (grown only when too small). payload and buf are not kept after Call
// returns. With a buf of enough capacity a call allocates nothing.
//
// The error is nil for an OK reply, a *StatusError for any other status
// (the Reply is filled in too), ErrClientClosed, or a *CallError saying
// why no reply came: the context's error (Call returns as soon as ctx is
// done), ErrNoReply after the last copy, ErrReplyTooLarge, the socket
// error that ended it (ECONNREFUSED: the server's port is closed), or an
// interceptor's refusal. (A call on a caller lane, see WithCallerLanes,
// notices its context within 2 ms.)
func (c *Client) Call(ctx context.Context, method string, payload, buf []byte) (Reply, error) {
	return c.roundTrip(ctx, proto.KindRequest, method, payload, buf)
}

// Ping sends a PING and returns the PONG's status: proto.PongServing
// while the server serves, proto.PongDraining while it drains.
func (c *Client) Ping(ctx context.Context) (proto.Status, error) {
	r, err := c.roundTrip(ctx, proto.KindPing, "ping", nil, nil)
	return r.Status, err
}

// Oneway sends method with payload flagged ONEWAY: the server runs the
// handler and sends no reply, and the request is sent once, never
// retransmitted. Oneway returns once the datagram has been handed to the
// kernel, or over TCP once its bytes are written to the stream (or with
// why they could not be); it never waits for a retransmission timeout.
func (c *Client) Oneway(ctx context.Context, method string, payload []byte) error {
	_, err := c.roundTripFlags(ctx, proto.KindRequest, true, method, payload, nil)
	return err
}

func (c *Client) roundTrip(ctx context.Context, kind proto.Kind, method string, payload, buf []byte) (Reply, error) {
	return c.roundTripFlags(ctx, kind, false, method, payload, buf)
}

func (c *Client) roundTripFlags(ctx context.Context, kind proto.Kind, oneway bool, method string, payload, buf []byte) (Reply, error) {
	if err := ctx.Err(); err != nil {
		return Reply{}, c.callError(method, 0, err)
	}
	call := c.getCall()
	call.Done = call.ownCh
	if err := call.prepare(ctx, kind, oneway, method, payload, buf); err != nil {
		c.putCall(call)
		return Reply{}, err
	}
	if c.laneEligible() {
		if ln := c.eng.lanes.take(call.ep); ln != nil {
			if reply, err, taken := c.laneCall(ctx, call, ln); taken {
				call.endTrace(reply.Status, err)
				c.putCall(call)
				return reply, err
			}
		}
	}
	// Read before start: from then on the loop owns the call (and may move
	// a DialService call to another endpoint of the same loop).
	id, loop := call.id, call.ep.loop
	if err := c.start(call); err != nil {
		call.endTrace(0, err)
		c.putCall(call)
		return Reply{}, err
	}
	if !c.spinWait(call) {
		select {
		case <-call.Done:
		case <-ctx.Done():
			if call.state.CompareAndSwap(callPending, callAbandoned) {
				// The loop recycles the call once it sees this (and any send
				// of it completed); call must not be touched any more. The
				// error tells it a deadline from a cancellation.
				loop.push(loopOp{kind: opCancel, id: id, err: ctx.Err()})
				return Reply{}, c.callError(method, 0, ctx.Err())
			}
			<-call.Done // the loop is completing it right now
		}
	}
	reply, err := call.Reply, call.Err
	c.putCall(call)
	return reply, err
}

// spinWait waits for a synchronous call's completion by polling its
// channel for up to the engine's caller-spin window (WithCallerSpin), and
// reports whether it came.
func (c *Client) spinWait(call *Call) bool {
	window := c.eng.cfg.callerSpin // < 0: the default, none through the loop
	if window <= 0 {
		return false
	}
	var start time.Time
	for i := 0; ; i++ {
		select {
		case <-call.Done:
			return true
		default:
		}
		if i&63 == 63 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > window {
				return false
			}
		}
	}
}

// Go starts a call of method with payload and returns at once; the Call
// arrives on done when it completed, its reply payload copied into buf
// (grown only when too small). payload is copied before Go returns; buf
// belongs to the call until it is delivered.
//
// The loop never waits for done: a completion that finds done full is
// kept and delivered as soon as done has room (counted in
// EngineStats.Delayed), so a caller that stops receiving delays only its
// own completions. Completions still undelivered when the Client or its
// engine closes are dropped and counted (EngineStats.Undelivered). With a
// nil done the Call gets a channel of its own (Call.Done). Go panics if
// done is unbuffered, as net/rpc does.
//
// ctx bounds the call: when it is done, the call completes with its error
// (observed through context.AfterFunc, which costs an allocation per call
// whose context can be cancelled); its deadline travels in the DEADLINE
// tag like Call's.
//
// Release the Call after reading it to let the Client reuse it.
func (c *Client) Go(ctx context.Context, method string, payload, buf []byte, done chan *Call) *Call {
	call := c.getCall()
	if done == nil {
		done = call.ownCh
	} else if cap(done) == 0 {
		panic("runtime: Client.Go: done channel is unbuffered")
	}
	call.Done = done
	if err := ctx.Err(); err != nil {
		call.Method, call.Err = method, c.callError(method, 0, err)
		call.deliverNow()
		return call
	}
	if err := call.prepare(ctx, proto.KindRequest, false, method, payload, buf); err != nil {
		call.Err = err
		call.deliverNow()
		return call
	}
	if ctx.Done() != nil {
		call.ctx = ctx
		id, loop := call.id, call.ep.loop // before start: see roundTripFlags
		call.stop = context.AfterFunc(ctx, func() {
			loop.push(loopOp{kind: opCancel, id: id, err: c.callError(method, 0, ctx.Err())})
		})
	}
	if err := c.start(call); err != nil {
		if call.stop != nil {
			call.stop()
			call.stop = nil
		}
		call.Err = err
		call.endTrace(0, err)
		call.deliverNow()
	}
	return call
}

// Release gives a delivered Call back to its Client for reuse. The Call,
// its Reply and Err must not be used afterwards (Reply.Payload, which lies
// in the caller's buf, stays the caller's).
func (call *Call) Release() {
	if call.client != nil {
		call.client.putCall(call)
	}
}

// deliverNow completes a call that never reached the loop.
func (call *Call) deliverNow() {
	call.state.Store(callCompleting)
	select {
	case call.Done <- call:
	default:
		go func() { call.Done <- call }() // a full done channel: never block the caller of Go
	}
}

// Close fails the Client's outstanding calls with ErrClientClosed and
// lets go of its endpoint; calls made after Close fail with
// ErrClientClosed. It never waits for a reply; a second Close returns
// ErrClientClosed.
func (c *Client) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closed.Store(true)
		if c.svc != nil {
			c.svc.loop.pushWait(loopOp{kind: opCloseClient, client: c})
			c.svc.close()
			return
		}
		c.ep.loop.pushWait(loopOp{kind: opCloseClient, client: c})
		c.eng.release(c.ep)
	})
	if !first {
		return ErrClientClosed
	}
	return nil
}

// start hands call to its endpoint's loop, after the interceptors agreed.
func (c *Client) start(call *Call) error {
	if c.closed.Load() {
		return ErrClientClosed
	}
	if err := c.before(call); err != nil {
		return err
	}
	if !call.ep.loop.startCall(call) {
		return ErrClientClosed
	}
	return nil
}

// before runs the interceptors' Before for the call's next attempt.
func (c *Client) before(call *Call) error {
	if len(c.cfg.interceptors) == 0 {
		return nil
	}
	a := &call.attempt
	a.Method, a.MethodID, a.Endpoint, a.N, a.Deadline = call.Method, call.methodID, call.ep.key.addr, call.attempts, call.deadline
	if c.svc != nil {
		a.Service = c.svc.name
	}
	for _, ic := range c.cfg.interceptors {
		if err := ic.Before(a); err != nil {
			return c.callError(call.Method, call.attempts, err)
		}
	}
	return nil
}

// after runs the interceptors' After for the attempt that just ended.
func (c *Client) after(call *Call, r *AttemptResult) {
	for _, ic := range c.cfg.interceptors {
		ic.After(&call.attempt, r)
	}
}

// callError wraps why a call got no answer.
func (c *Client) callError(method string, attempts int, err error) error {
	if errors.Is(err, ErrClientClosed) {
		return ErrClientClosed
	}
	ce := &CallError{Method: method, Attempts: attempts, Err: err}
	if c.svc != nil {
		ce.Service = c.svc.name
	}
	if c.ep != nil {
		ce.Endpoint = c.ep.key.addr
		if last := c.ep.lastSocketErr.Load(); last != nil && !errors.Is(err, *last) {
			ce.LastSocketErr = *last
		}
	}
	return ce
}

// callErrorOn is callError for a call on endpoint ep (a DialService
// call's picked endpoint).
func (c *Client) callErrorOn(call *Call, err error) error {
	e := c.callError(call.Method, call.attempts, err)
	if ce, ok := e.(*CallError); ok && call.ep != nil {
		ce.Endpoint = call.ep.key.addr
		if last := call.ep.lastSocketErr.Load(); last != nil && !errors.Is(err, *last) {
			ce.LastSocketErr = *last
		}
	}
	return e
}

func (c *Client) getCall() *Call {
	call := c.calls.Get().(*Call)
	call.state.Store(callPending)
	return call
}

func (c *Client) putCall(call *Call) {
	call.Method, call.Reply, call.Err, call.Done = "", Reply{}, nil, nil
	call.buf, call.ctx, call.stop, call.deadline = nil, nil, nil, time.Time{}
	call.sending, call.attempts, call.finished, call.heapIndex, call.stripped = 0, 0, false, -1, false
	call.stripWanted = false
	call.directNs, call.directPending = 0, false
	call.ep, call.sc, call.prevEp, call.pick = nil, nil, nil, PickInfo{}
	call.traceCtx = nil
	call.seal = nil
	c.calls.Put(call)
}

// prepare assigns the call its request id and encodes the request: the
// extension block carries ATTEMPT (so the server answers with
// SERVICE_TIME), DEADLINE from ctx and CALLER, unless the endpoint is
// known not to speak EXT.
func (call *Call) prepare(ctx context.Context, kind proto.Kind, oneway bool, method string, payload, buf []byte) error {
	c := call.client
	call.Method, call.kind, call.oneway, call.buf, call.ep = method, kind, oneway, buf, c.ep
	call.id = c.eng.ids.Add(1)
	if c.svc != nil {
		if err := c.svc.waitReady(ctx); err != nil {
			return c.callError(method, 0, err)
		}
		call.pick = PickInfo{Method: method, MethodID: proto.MethodID(method)}
		sc, err := c.svc.pick(&call.pick)
		if err != nil {
			return c.callError(method, 0, err)
		}
		call.sc, call.ep = sc, sc.ep
	}
	if d, ok := ctx.Deadline(); ok {
		call.deadline = d
	}
	ep := call.ep
	sealed := c.seal != nil && kind != proto.KindPing
	limit := ep.maxPayload()
	if sealed {
		limit -= c.seal.overhead
	}
	if len(payload) > limit {
		return c.callError(method, 0, fmt.Errorf("payload of %d bytes over the %d a %s frame carries: %w",
			len(payload), limit, ep.transport(), proto.ErrPayloadTooLarge))
	}
	need := proto.HeaderLen + len(payload) + extRoom
	if cap(call.frame) < need {
		call.frame = make([]byte, need, max(need, 512))
	}
	var f proto.Frame
	var err error
	if kind == proto.KindPing {
		call.methodID = 0
		f, err = proto.EncodePing(call.frame[:cap(call.frame)], call.id)
	} else {
		call.methodID = proto.MethodID(method)
		var flags proto.Flags
		if oneway {
			flags = proto.FlagOneway
		}
		if ep.noExt.Load() {
			f, err = proto.EncodeRequest(call.frame[:cap(call.frame)], call.id, call.methodID, flags, payload)
		} else {
			var xb proto.ExtBuilder
			xb.SetAttempt(0)
			if t := c.cfg.tracer; t != nil {
				var service string
				if c.svc != nil {
					service = c.svc.name
				}
				tctx, tc, state, send := t.StartCall(ctx, service, method)
				call.traceCtx, call.traceFrom = tctx, time.Now()
				if send {
					xb.SetTrace(tc)
					if len(state) > 0 {
						xb.SetTraceState(state)
					}
				}
			}
			if !call.deadline.IsZero() {
				xb.SetDeadline(time.Until(call.deadline))
			}
			if c.caller != nil {
				xb.SetCaller(c.caller)
			}
			f, err = proto.EncodeRequestExt(call.frame[:cap(call.frame)], call.id, call.methodID, flags, &xb, payload)
		}
	}
	if err != nil {
		return c.callError(method, 0, err)
	}
	call.frame = f
	if sealed {
		// On the caller's goroutine: the handshake, when there is no live
		// session with the server yet, may take a round trip or more.
		if err := c.seal.s.Prepare(ctx, ep.key.addr); err != nil {
			return c.callError(method, 0, fmt.Errorf("sealing: %w", err))
		}
		call.seal = c.seal.loops[ep.loop.idx]
		if need := len(f) + c.seal.overhead; cap(call.sealBuf) < need {
			call.sealBuf = make([]byte, 0, max(need, 512))
		}
	}
	return nil
}

// extRoom is what a request's extension block may take: ATTEMPT,
// DEADLINE, a CALLER of up to 255 bytes, TRACE and a TRACESTATE of up to
// 255 bytes.
const extRoom = 2 + 3 + 6 + 2 + proto.MaxExtValue + 2 + proto.TraceLen + 2 + proto.MaxExtValue

// endTrace ends a traced call's trace (once).
func (call *Call) endTrace(status proto.Status, err error) {
	if call.traceCtx == nil {
		return
	}
	c := call.client
	end := CallEnd{Method: call.Method, Status: status, Err: err, Attempts: call.attempts, Duration: time.Since(call.traceFrom)}
	if c.svc != nil {
		end.Service = c.svc.name
	}
	c.cfg.tracer.EndCall(call.traceCtx, &end)
	call.traceCtx = nil
}

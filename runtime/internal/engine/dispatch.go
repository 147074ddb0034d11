package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// Outcome is what Dispatch decided for one datagram.
type Outcome int

const (
	// Nothing to send: dropped, oneway, or a reply that could not be built.
	None Outcome = iota
	// Ready: the returned frame is the reply.
	Ready
	// Deferred: a worker owns the request; its reply comes back through
	// the loop's JobDone.
	Deferred
)

// Dispatcher turns one received request into at most one reply. Each loop
// owns one and every path of the loop shares it; it is the request path
// shared by all backends.
type Dispatcher struct {
	srv   *Server
	loop  int // index among the server's loops, for the method counters
	queue int
	c     *LoopCounters
	req   Request
	resp  Response
	x     proto.ExtBuilder
	// seal opens sealed requests and seals their replies (SetSealer);
	// ident is the identity of the request being dispatched.
	seal  sealing
	ident Identity
	// arrival stamps the requests of one batch taken from the kernel
	// (NewPass).
	arrival passClock
	// inflight holds the blocking requests a worker owns, so a client's
	// retransmission of one is dropped instead of running the handler
	// again (or, while draining, being refused while its reply is on the
	// way).
	inflight map[inflightKey]struct{}
}

type inflightKey struct {
	peer netip.AddrPort
	id   uint64
}

// Init binds d to its loop.
func (d *Dispatcher) Init(srv *Server, loop, queue int, c *LoopCounters) {
	*d = Dispatcher{srv: srv, loop: loop, queue: queue, c: c}
	d.req.base = srv.ctx
}

// NewPass tells d that its loop takes a new batch from the kernel: the
// next request it dispatches reads the clock, and the rest of the batch
// shares that arrival time. Without it every request of the
// dispatcher's life would share one arrival time.
func (d *Dispatcher) NewPass() { d.arrival.fresh = false }

// Counters are the loop's counters.
func (d *Dispatcher) Counters() *LoopCounters { return d.c }

// JobFinished forgets a blocking request whose reply is going out.
// A sealed request's reply is sealed here, on the loop.
func (d *Dispatcher) JobFinished(j *Job) {
	delete(d.inflight, inflightKey{j.Peer, proto.Frame(j.frame).RequestID()})
	d.sealJob(j)
}

// Submitter hands an admitted blocking request to the worker pool,
// keeping what its path needs to send the reply later; false when the
// pool is full. Each path's source implements it.
type Submitter interface {
	Submit(m *Method, req *Request) bool
}

// Dispatch handles datagram in from peer on path, building any reply in
// out (whose capacity bounds it). The reply frame is a sub-slice of out.
// Blocking requests go to sub.
func (d *Dispatcher) Dispatch(in []byte, peer netip.AddrPort, path Path, out []byte, sub Submitter) (Outcome, []byte) {
	frame, err := proto.Parse(in)
	if d.seal.s != nil {
		return d.dispatchSealing(in, frame, err, peer, path, out, sub)
	}
	return d.dispatch(in, frame, err, peer, path, out, sub)
}

// DispatchParsed is Dispatch for input already parsed (by proto.Parse or a
// proto.Stream): in is what was received, frame and err the result.
func (d *Dispatcher) DispatchParsed(in []byte, frame proto.Frame, err error, peer netip.AddrPort, path Path, out []byte, sub Submitter) (Outcome, []byte) {
	if d.seal.s != nil {
		return d.dispatchSealing(in, frame, err, peer, path, out, sub)
	}
	return d.dispatch(in, frame, err, peer, path, out, sub)
}

// dispatch is DispatchParsed for a plaintext frame (in is what it was
// parsed from).
func (d *Dispatcher) dispatch(in []byte, frame proto.Frame, err error, peer netip.AddrPort, path Path, out []byte, sub Submitter) (Outcome, []byte) {
	c := d.c
	if err != nil {
		perr, _ := err.(proto.Error)
		if perr.Answer() {
			f, eerr := proto.EncodeBadFrame(out[:cap(out)], in, err)
			if eerr != nil {
				d.srv.Warn.Drop(c, path, DropTruncated, d.queue)
				return None, nil
			}
			c.BadFrame.Add(1)
			return Ready, f
		}
		d.srv.Warn.Drop(c, path, DropForParse(perr), d.queue)
		return None, nil
	}
	switch frame.Kind() {
	case proto.KindPing:
		status := proto.PongServing
		if d.srv.Draining.Load() {
			status = proto.PongDraining
		}
		f, err := proto.EncodePong(out[:cap(out)], frame.RequestID(), status)
		if err != nil {
			d.srv.Warn.Drop(c, path, DropTruncated, d.queue)
			return None, nil
		}
		c.Pings.Add(1)
		return Ready, f
	case proto.KindRequest:
	default:
		d.srv.Warn.Drop(c, path, DropReply, d.queue)
		return None, nil
	}

	c.Served[path].Add(1)
	arrival := d.arrival.now()
	oneway := frame.Oneway()
	if oneway {
		c.Oneway.Add(1)
	}
	m := d.srv.Methods.Lookup(frame.MethodID())
	if m == nil {
		c.UnknownMethod.Add(1)
		return d.reply(frame, path, out, proto.StatusUnknownMethod, "unknown method", arrival, 0)
	}
	mc := &m.Counters[d.loop]
	mc.Requests.Add(1)
	req, resp := &d.req, &d.resp
	if !d.begin(req, frame, peer, path, m, arrival) {
		c.Expired.Add(1)
		mc.Statuses[StatusSlot(proto.StatusDeadlineExceeded)].Add(1)
		return d.reply(frame, path, out, proto.StatusDeadlineExceeded, "deadline expired before the request arrived", arrival, 0)
	}
	key := inflightKey{peer, frame.RequestID()}
	if m.Blocking {
		if _, dup := d.inflight[key]; dup {
			d.srv.Warn.Drop(c, path, DropDuplicate, d.queue)
			return None, nil
		}
	}
	if d.srv.Draining.Load() {
		c.Overloaded.Add(1)
		mc.Statuses[StatusSlot(proto.StatusOverloaded)].Add(1)
		return d.reply(frame, path, out, proto.StatusOverloaded, "server is draining", arrival, drainingRetryAfter)
	}
	resp.reset(out, replyPayloadOffset(frame))
	if m.Admit != nil {
		req.admitted = false
		if panicked := d.run(m, m.Admit, req, resp); panicked || !req.admitted {
			if panicked && req.admitted && m.Release != nil {
				m.Release(req)
			}
			return d.finish(m, mc, req, resp, oneway) // answered by the admission chain
		}
	}
	if m.Blocking {
		if !sub.Submit(m, req) {
			if m.Release != nil {
				m.Release(req)
			}
			c.Overloaded.Add(1)
			mc.Statuses[StatusSlot(proto.StatusOverloaded)].Add(1)
			return d.reply(frame, path, out, proto.StatusOverloaded, "worker pool full", arrival, poolFullRetryAfter)
		}
		if d.inflight == nil {
			d.inflight = make(map[inflightKey]struct{})
		}
		d.inflight[key] = struct{}{}
		c.Blocking.Add(1)
		req.frame = nil
		return Deferred, nil
	}
	d.run(m, m.Serve, req, resp)
	return d.finish(m, mc, req, resp, oneway)
}

// begin fills req for a request of m; false when its deadline has already
// passed (DEADLINE 0 on the wire).
func (d *Dispatcher) begin(req *Request, frame proto.Frame, peer netip.AddrPort, path Path, m *Method, arrival int64) bool {
	req.frame, req.peer, req.queue, req.path, req.method = frame, peer, d.queue, path, m
	req.ident = d.ident
	req.arrival = arrival
	req.deadline = 0
	return beginExt(req)
}

// run calls stage with the request and reports whether it panicked, in
// which case the response is an INTERNAL error.
func (d *Dispatcher) run(m *Method, stage ServeFunc, req *Request, resp *Response) (panicked bool) {
	return runStage(d.srv, d.c, m, stage, req, resp)
}

func runStage(s *Server, c *LoopCounters, m *Method, stage ServeFunc, req *Request, resp *Response) (panicked bool) {
	p := callStage(stage, req, resp)
	if p == nil {
		return false
	}
	c.Panics.Add(1)
	s.logPanic(m, p)
	resp.Reset()
	resp.Error(proto.StatusInternal, "handler panicked")
	return true
}

// finish seals the reply of a request handled on the loop and counts it.
func (d *Dispatcher) finish(m *Method, mc *MethodCounters, req *Request, resp *Response, oneway bool) (Outcome, []byte) {
	now := Mono()
	f := sealReply(req, resp, d.c, &d.x, now)
	mc.Statuses[StatusSlot(replyStatus(f, resp))].Add(1)
	lat := time.Duration(now - req.arrival)
	recordBoth(&mc.Latency, &d.c.Latency, lat)
	if d.srv.Poison {
		poison(req.frame)
	}
	req.frame = nil
	if oneway || f == nil {
		return None, nil
	}
	return Ready, f
}

// replyStatus is the status a sealed reply carries.
func replyStatus(f proto.Frame, resp *Response) proto.Status {
	if f == nil {
		return resp.status
	}
	return f.Status()
}

// TooLarge answers a datagram that did not fit the receive buffer: a
// request whose header is intact gets TOO_LARGE, anything else is dropped.
// A sealed one is dropped as DropSealed: without its whole ciphertext it
// cannot be authenticated, so nothing about it can be believed.
func (d *Dispatcher) TooLarge(head []byte, path Path, out []byte) (Outcome, []byte) {
	frame := proto.Frame(head)
	if d.seal.s != nil && len(head) >= proto.HeaderLen && frame.Sealed() {
		d.srv.Warn.Drop(d.c, path, DropSealed, d.queue)
		return None, nil
	}
	if len(head) < proto.HeaderLen || frame.Kind() != proto.KindRequest || frame.MethodID() == 0 {
		d.srv.Warn.Drop(d.c, path, DropTruncated, d.queue)
		return None, nil
	}
	if _, err := proto.Parse(head[:proto.HeaderLen]); err != nil && !errors.Is(err, proto.ErrBadFrame) {
		d.srv.Warn.Drop(d.c, path, DropTruncated, d.queue) // not GWIR v1 at all
		return None, nil
	}
	d.c.TooLarge.Add(1)
	// Only the header arrived: no extension block to answer in kind.
	return d.reply(frame[:proto.HeaderLen:proto.HeaderLen], path, out, proto.StatusTooLarge, "request larger than the receive buffer", d.arrival.now(), 0)
}

// Retry hints of the runtime's own OVERLOADED answers: a draining server
// is going away (try another), a full pool drains in a few handler times.
const (
	drainingRetryAfter = time.Second
	poolFullRetryAfter = 10 * time.Millisecond
)

// reply answers frame with status and msg (nothing for oneway), with
// SERVICE_TIME and RETRY_AFTER when the request spoke EXT.
func (d *Dispatcher) reply(frame proto.Frame, path Path, out []byte, status proto.Status, msg string, arrival int64, retryAfter time.Duration) (Outcome, []byte) {
	if frame.Oneway() {
		return None, nil
	}
	f := encodeError(out[:cap(out)], frame, status, msg, arrival, retryAfter, &d.x)
	if f == nil {
		d.srv.Warn.Drop(d.c, path, DropTruncated, d.queue)
		return None, nil
	}
	return Ready, f
}

type stagePanic struct {
	value any
	stack []byte
}

func callStage(stage ServeFunc, req *Request, resp *Response) (p *stagePanic) {
	defer func() {
		if v := recover(); v != nil {
			p = &stagePanic{value: v, stack: debug.Stack()}
		}
	}()
	stage(req, resp)
	return nil
}

func (s *Server) logPanic(m *Method, p *stagePanic) {
	if m.panicLogged.CompareAndSwap(false, true) {
		s.Logger.Error("handler panicked; answering INTERNAL (logged once per method)",
			"method", m.Name, "panic", fmt.Sprint(p.value), "stack", string(p.stack))
	}
}

// poisonByte fills request buffers once their handler returned
// (Config.Poison), so a handler that kept a slice sees garbage at once.
const poisonByte = 0xDB

func poison(b []byte) {
	for i := range b {
		b[i] = poisonByte
	}
}

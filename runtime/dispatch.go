package runtime

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// dispatcher turns one received datagram into at most one reply. Each loop
// owns one; it is the part of the request path shared by every backend.
type dispatcher struct {
	srv   *Server
	queue int
	stats *loopCounters
	req   Request
	resp  Response
	// toWorker hands a blocking request to the worker pool; false when the
	// pool is full. Set once by the backend, so dispatch passes no closure.
	toWorker func(h *handlerEntry, frame proto.Frame, peer netip.AddrPort) bool
	// inflight holds the blocking requests a worker owns, so that a
	// client's retransmission of one is dropped instead of running the
	// handler again or, while draining, being refused OVERLOADED while the
	// real reply is on its way.
	inflight map[inflightKey]struct{}
}

type inflightKey struct {
	peer netip.AddrPort
	id   uint64
}

// jobFinished forgets a blocking request whose reply is going out.
func (d *dispatcher) jobFinished(j *job) {
	delete(d.inflight, inflightKey{j.peer, proto.Frame(j.frame).RequestID()})
}

// reply is what dispatch decided for one datagram.
type reply int

const (
	replyNone     reply = iota // dropped or oneway: nothing to send
	replyReady                 // out[:n] holds the reply frame
	replyDeferred              // a worker owns the request; its reply comes later
)

// dispatch handles datagram in, received from peer, writing any reply frame
// into out (whose capacity bounds the reply).
func (d *dispatcher) dispatch(in []byte, peer netip.AddrPort, out []byte) (reply, int) {
	frame, err := proto.Parse(in)
	return d.dispatchParsed(in, frame, err, peer, out)
}

// dispatchParsed is dispatch for input already parsed (by proto.Parse or
// a proto.Stream): in is what was received, frame and err the result.
func (d *dispatcher) dispatchParsed(in []byte, frame proto.Frame, err error, peer netip.AddrPort, out []byte) (reply, int) {
	s := d.stats
	if err != nil {
		perr, _ := err.(proto.Error)
		if perr.Answer() {
			f, eerr := proto.EncodeBadFrame(out[:cap(out)], in, err)
			if eerr != nil {
				s.dropped[DropTruncated].Add(1)
				return replyNone, 0
			}
			s.badFrame.Add(1)
			return replyReady, len(f)
		}
		s.dropped[dropFor(perr)].Add(1)
		return replyNone, 0
	}
	switch frame.Kind() {
	case proto.KindPing:
		status := proto.PongServing
		if d.srv.draining.Load() {
			status = proto.PongDraining
		}
		f, err := proto.EncodePong(out[:cap(out)], frame.RequestID(), status)
		if err != nil {
			s.dropped[DropTruncated].Add(1)
			return replyNone, 0
		}
		s.pings.Add(1)
		return replyReady, len(f)
	case proto.KindRequest:
	default:
		s.dropped[DropReply].Add(1)
		return replyNone, 0
	}

	s.requests.Add(1)
	oneway := frame.Oneway()
	if oneway {
		s.oneway.Add(1)
	}
	h := d.srv.lookup(frame.MethodID())
	if h == nil {
		s.unknownMethod.Add(1)
		return d.errorReply(frame, out, proto.StatusUnknownMethod, "unknown method")
	}
	key := inflightKey{peer, frame.RequestID()}
	if h.blocking {
		if _, dup := d.inflight[key]; dup {
			s.dropped[DropDuplicate].Add(1)
			return replyNone, 0
		}
	}
	if d.srv.draining.Load() {
		s.overloaded.Add(1)
		return d.errorReply(frame, out, proto.StatusOverloaded, "server is draining")
	}
	if h.blocking {
		if !d.toWorker(h, frame, peer) {
			s.overloaded.Add(1)
			return d.errorReply(frame, out, proto.StatusOverloaded, "worker pool full")
		}
		if d.inflight == nil {
			d.inflight = make(map[inflightKey]struct{})
		}
		d.inflight[key] = struct{}{}
		s.blocking.Add(1)
		return replyDeferred, 0
	}
	start := time.Now()
	n := runHandler(h, frame, peer, d.queue, &d.req, &d.resp, out, s)
	s.latency.record(time.Since(start))
	if oneway || n == 0 {
		return replyNone, 0
	}
	return replyReady, n
}

// tooLarge answers a datagram that did not fit the receive buffer: a
// request whose header is intact gets TOO_LARGE, anything else is dropped.
func (d *dispatcher) tooLarge(head []byte, out []byte) (reply, int) {
	frame := proto.Frame(head)
	if len(head) < proto.HeaderLen || frame.Kind() != proto.KindRequest || frame.MethodID() == 0 {
		d.stats.dropped[DropTruncated].Add(1)
		return replyNone, 0
	}
	if _, err := proto.Parse(head[:proto.HeaderLen]); err != nil && !errors.Is(err, proto.ErrBadFrame) {
		d.stats.dropped[DropTruncated].Add(1) // not GWIR v1 at all
		return replyNone, 0
	}
	d.stats.tooLarge.Add(1)
	return d.errorReply(frame[:proto.HeaderLen], out, proto.StatusTooLarge, "request larger than the receive buffer")
}

func (d *dispatcher) errorReply(frame proto.Frame, out []byte, status proto.Status, msg string) (reply, int) {
	if frame.Oneway() {
		return replyNone, 0
	}
	f, err := proto.EncodeError(out[:cap(out)], frame.RequestID(), frame.MethodID(), status, msg)
	if err != nil {
		d.stats.dropped[DropTruncated].Add(1)
		return replyNone, 0
	}
	return replyReady, len(f)
}

// runHandler runs h on frame and seals its response into out, returning the
// reply length (0 when nothing can be sent). A panicking handler is
// answered INTERNAL and logged once per method with its stack.
func runHandler(h *handlerEntry, frame proto.Frame, peer netip.AddrPort, queue int, req *Request, resp *Response, out []byte, s *loopCounters) int {
	req.frame, req.peer, req.queue = frame, peer, queue
	resp.reset(out)
	if panicked := callHandler(h, req, resp); panicked != nil {
		s.panics.Add(1)
		if h.panicLogged.CompareAndSwap(false, true) {
			h.srv.cfg.logger.Error("handler panicked; answering INTERNAL (logged once per method)",
				"method", h.name, "panic", fmt.Sprint(panicked.value), "stack", string(panicked.stack))
		}
		resp.Reset()
		resp.Error(proto.StatusInternal, "handler panicked")
	}
	req.frame = nil
	if resp.tooLarge {
		s.tooLarge.Add(1)
		f, err := proto.EncodeError(out[:cap(out)], frame.RequestID(), frame.MethodID(), proto.StatusTooLarge,
			"response larger than the reply buffer")
		if err != nil {
			return 0
		}
		return len(f)
	}
	f, err := proto.Seal(resp.buf, proto.Header{Kind: proto.KindResponse, RequestID: frame.RequestID(),
		MethodID: frame.MethodID(), Status: resp.status})
	if err != nil {
		return 0
	}
	return len(f)
}

type handlerPanic struct {
	value any
	stack []byte
}

func callHandler(h *handlerEntry, req *Request, resp *Response) (p *handlerPanic) {
	defer func() {
		if v := recover(); v != nil {
			p = &handlerPanic{value: v, stack: debug.Stack()}
		}
	}()
	h.fn(req, resp)
	return nil
}

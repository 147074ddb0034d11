package policy

import (
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// Admission returns the admission chain, in the order it runs on the loop
// before a request is handled or queued for a worker. This is the one
// place the order is set; the package doc says why it is this one.
func (s *Server) Admission() []runtime.Middleware {
	// Before any of them the engine answers DEADLINE_EXCEEDED to a call
	// that arrived expired (deadline.Accept at arrival), so expired work
	// spends no token and no slot; it checks again when a worker takes a
	// blocking call. A stage here would only re-read the clock for the
	// microseconds between arrival and admission.
	return []runtime.Middleware{
		s.authorize, // 1. DENIED with the rule's message
		s.rateLimit, // 2. RATE_LIMITED, RETRY_AFTER = time to the next token
		s.shedAdmit, // 3. OVERLOADED, RETRY_AFTER = one shedder bucket (blocking methods); last, see shedAdmit
	}
}

// Middleware returns the handler chain: the shedder's timing of blocking
// handlers (their run time and their wait for a worker), which feeds its
// window.
func (s *Server) Middleware() []runtime.Middleware {
	return []runtime.Middleware{s.shedTime}
}

// authorize: the first rule that matches the call decides; a denial is
// answered DENIED with the rule's message.
func (s *Server) authorize(m runtime.MethodInfo, next runtime.Handler) runtime.Handler {
	s.learn(m.Name)
	return &authorizeStage{s: s, id: m.ID, next: next}
}

type authorizeStage struct {
	s    *Server
	id   uint32
	next runtime.Handler
}

func (h *authorizeStage) ServeGWIR(req *runtime.Request, resp *runtime.Response) {
	st := h.s.cur.Load()
	// The loop index only spreads the hit counters; any shard will do.
	loop := h.s.shards.get(req.Queue()).index
	var caller []byte
	if st.authzCaller {
		caller = req.Caller()
	}
	// The identity is the peer's authenticated SPIFFE ID when the request
	// came sealed (runtime.WithSealer), nil otherwise: a rule on
	// identities never matches an unsealed call.
	if allow, _, msg := st.authz.Match(loop, h.id, req.Peer().Addr(), caller, stringBytes(req.Identity())); !allow {
		resp.Error(proto.StatusDenied, msg)
		return
	}
	h.next.ServeGWIR(req, resp)
}

// rateLimit takes a token from the first limit that matches the call, at
// the call's arrival time.
func (s *Server) rateLimit(m runtime.MethodInfo, next runtime.Handler) runtime.Handler {
	s.learn(m.Name)
	return &rateLimitStage{s: s, id: m.ID, next: next, msg: "rate limit exceeded for " + m.Name}
}

type rateLimitStage struct {
	s    *Server
	id   uint32
	next runtime.Handler
	msg  string
}

func (h *rateLimitStage) ServeGWIR(req *runtime.Request, resp *runtime.Response) {
	st := h.s.cur.Load()
	if len(st.doc.Limits) == 0 {
		h.next.ServeGWIR(req, resp)
		return
	}
	var caller []byte
	if st.limitCaller {
		caller = req.Caller()
	}
	sh := h.s.shards.get(req.Queue())
	sh.lock()
	ok, retry := st.limiter.Loop(sh.index).Allow(mono(req.Arrival()), h.id, caller, req.Peer().Addr())
	sh.unlock()
	if !ok {
		resp.Error(proto.StatusRateLimited, h.msg)
		resp.SetRetryAfter(ceilMicro(retry))
		return
	}
	h.next.ServeGWIR(req, resp)
}

// shedAdmit runs the shedder for blocking methods. A loop method holds its
// loop while it runs, so at most one call per loop is in flight and the
// Little's-law bound can never be passed: the shedder's resource is the
// worker pool. It must be the last admission stage: a call it admits holds
// an in-flight slot until its handler ends or the runtime releases it
// (runtime.Releaser), and a later stage refusing the call would leak it.
func (s *Server) shedAdmit(m runtime.MethodInfo, next runtime.Handler) runtime.Handler {
	if s.shed == nil || !m.Blocking {
		return next
	}
	return &shedStage{s: s, next: next, msg: "server overloaded: " + m.Name + " refused by the load shedder"}
}

type shedStage struct {
	s    *Server
	next runtime.Handler
	msg  string
}

func (h *shedStage) ServeGWIR(req *runtime.Request, resp *runtime.Response) {
	sh := h.s.shards.get(req.Queue())
	now := nanotime()
	sh.lock()
	l := h.s.shed.Loop(sh.index)
	sh.fold(now, l)
	ok, retry := l.Allow(now, time.Duration(now-mono(req.Arrival())))
	sh.unlock()
	if !ok {
		resp.Error(proto.StatusOverloaded, h.msg)
		resp.SetRetryAfter(retry)
		return
	}
	h.next.ServeGWIR(req, resp)
}

// ReleaseGWIR gives back the in-flight slot of an admitted call that never
// reached its handler (runtime.Releaser).
func (h *shedStage) ReleaseGWIR(req *runtime.Request) {
	h.s.shards.get(req.Queue()).released.Add(1)
}

var _ runtime.Releaser = (*shedStage)(nil)

// shedTime times a blocking handler for the shedder: its run time, and its
// wait from arrival to its start (the worker queue).
func (s *Server) shedTime(m runtime.MethodInfo, next runtime.Handler) runtime.Handler {
	if s.shed == nil || !m.Blocking {
		return next
	}
	return &shedTimer{s: s, next: next}
}

type shedTimer struct {
	s    *Server
	next runtime.Handler
}

func (h *shedTimer) ServeGWIR(req *runtime.Request, resp *runtime.Response) {
	start := nanotime()
	defer h.done(req, start) // also when the handler panics: the slot must come back
	h.next.ServeGWIR(req, resp)
}

func (h *shedTimer) done(req *runtime.Request, start int64) {
	sh := h.s.shards.get(req.Queue())
	sh.doneRt.Add(nanotime() - start)
	sh.doneWait.Add(start - mono(req.Arrival()))
	sh.doneN.Add(1) // last: the loop takes the count first
}

// ceilMicro rounds d up to the RETRY_AFTER tag's microseconds, so a caller
// that waits what it is told finds the token there.
func ceilMicro(d time.Duration) time.Duration {
	return (d + time.Microsecond - 1) / time.Microsecond * time.Microsecond
}

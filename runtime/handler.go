package runtime

import (
	"github.com/zerohop/zerohop/runtime/internal/engine"
)

// Handler serves one request. ServeGWIR runs on the event loop that
// received the request (or on a worker, for HandleBlocking) and must not
// keep req, resp or any slice obtained from them after it returns.
type Handler interface {
	ServeGWIR(req *Request, resp *Response)
}

// HandlerFunc is a function used as a Handler.
type HandlerFunc func(req *Request, resp *Response)

// ServeGWIR calls f.
func (f HandlerFunc) ServeGWIR(req *Request, resp *Response) { f(req, resp) }

// MethodInfo describes the method a Middleware wraps.
type MethodInfo struct {
	// Name is the full method name, "pkg.Service/Method"; ID its method id.
	Name string
	ID   uint32
	// Blocking: registered with HandleBlocking (its handler runs on a
	// worker).
	Blocking bool
}

// Middleware wraps the handler of one method. It is called once per
// method, when the method is registered, never per request, so it may
// look up per-method state (a rate limit's bucket) there and keep it in
// the Handler it returns; that Handler runs per request and must not
// allocate if the request path is to stay allocation-free.
//
// A middleware answers a request itself by writing the Response (usually
// Error with a status, and SetRetryAfter) and not calling next.
type Middleware func(m MethodInfo, next Handler) Handler

// chain wraps h in mws, the first of mws outermost.
func chain(m MethodInfo, h Handler, mws []Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](m, h)
	}
	return h
}

// Releaser is implemented by an admission Handler (what a WithAdmission
// middleware returns) that holds something for each request it admits,
// such as a load shedder's in-flight slot. The runtime calls ReleaseGWIR
// for every request the whole admission chain admitted whose handler
// chain then never ran: the worker pool was full (OVERLOADED), its
// deadline passed in the worker queue (DEADLINE_EXCEEDED), the server shut
// down before a worker took it, or an admission stage panicked after
// admitting it. It runs on the loop for the first and last cases and on a
// worker for the others, at most once per request; it must not block and
// should not allocate. The Request's Method, MethodID, Queue, Peer and
// Arrival are valid; its payload may not be.
type Releaser interface {
	ReleaseGWIR(req *Request)
}

// admission wraps the admitter in mws like chain, and collects the
// Releasers among the handlers the middlewares return.
func admission(m MethodInfo, mws []Middleware) (Handler, []Releaser) {
	var h Handler = admitter{}
	var rel []Releaser
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](m, h)
		if r, ok := h.(Releaser); ok {
			rel = append(rel, r)
		}
	}
	return h, rel
}

// releaseFunc is what the engine calls for an admitted request that never
// reached its handler; nil when no admission stage holds anything.
func releaseFunc(rel []Releaser) func(*engine.Request) {
	if len(rel) == 0 {
		return nil
	}
	return func(req *engine.Request) {
		for _, r := range rel {
			r.ReleaseGWIR((*Request)(req))
		}
	}
}

// admitter is the innermost handler of an admission chain: reaching it
// admits the request.
type admitter struct{}

func (admitter) ServeGWIR(req *Request, _ *Response) { (*engine.Request)(req).Admit() }

// stage turns a Handler into what the engine calls.
func stage(h Handler) engine.ServeFunc {
	if f, ok := h.(HandlerFunc); ok {
		return func(req *engine.Request, resp *engine.Response) { f((*Request)(req), (*Response)(resp)) }
	}
	return func(req *engine.Request, resp *engine.Response) { h.ServeGWIR((*Request)(req), (*Response)(resp)) }
}

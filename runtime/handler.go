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

package typed

import (
	"context"
	"errors"
	"fmt"
	"sync"

	gwir "github.com/zerohop/zerohop/proto"
	zrt "github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/proto"
)

// Message is a pointer to a generated protobuf message type M.
type Message[M any] interface {
	*M
	proto.Message
}

// Handler adapts a typed method to a runtime.HandlerFunc (see the package
// contract for decoding, encoding and errors). The same HandlerFunc serves
// both Server.Handle and Server.HandleBlocking; which one is the
// registration's choice.
func Handler[Req, Rep any, PReq Message[Req], PRep Message[Rep]](method func(context.Context, PReq) (PRep, error)) zrt.HandlerFunc {
	return func(req *zrt.Request, resp *zrt.Response) {
		in := PReq(new(Req))
		if err := proto.Unmarshal(req.Payload(), in); err != nil {
			resp.Error(gwir.StatusBadFrame, "payload does not decode as "+string(in.ProtoReflect().Descriptor().FullName())+": "+err.Error())
			return
		}
		ctx := req.Context()
		if d, ok := req.Deadline(); ok {
			if _, has := ctx.Deadline(); !has {
				// A loop handler's Context is the server's; the method still
				// gets the caller's deadline.
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, d)
				defer cancel()
			}
		}
		out, err := method(ctx, in)
		if err != nil {
			status, msg := replyStatus(err)
			resp.Error(status, msg)
			return
		}
		if out == nil {
			return // an empty message: no bytes
		}
		bp := buffers.Get().(*[]byte)
		defer buffers.Put(bp)
		b, err := proto.MarshalOptions{}.MarshalAppend((*bp)[:0], out)
		if err != nil {
			resp.Error(gwir.StatusInternal, "encoding the reply: "+err.Error())
			return
		}
		keep(bp, b)
		resp.Write(b) // too large: the runtime answers TOO_LARGE
	}
}

// replyStatus maps a method's error to the reply's status and message.
func replyStatus(err error) (gwir.Status, string) {
	var te *Error
	var se *zrt.StatusError
	switch {
	case errors.As(err, &te):
		return te.Status, te.Message
	case errors.As(err, &se):
		return se.Status, se.Message
	case errors.Is(err, context.DeadlineExceeded):
		return gwir.StatusDeadlineExceeded, err.Error()
	default:
		return gwir.StatusInternal, err.Error()
	}
}

// Invoke calls method on c with in and decodes the reply into out. Its
// error is nil, an *Error (application status), a *runtime.StatusError
// (protocol status), or the runtime.Client's error as it is (a call that
// got no answer is a *runtime.CallError, which names the method already).
func Invoke(ctx context.Context, c *zrt.Client, method string, in, out proto.Message) error {
	pp := buffers.Get().(*[]byte)
	defer buffers.Put(pp)
	payload, err := proto.MarshalOptions{}.MarshalAppend((*pp)[:0], in)
	if err != nil {
		return fmt.Errorf("%s: encoding the request: %w", method, err)
	}
	keep(pp, payload)
	rp := buffers.Get().(*[]byte)
	defer buffers.Put(rp)
	reply, err := c.Call(ctx, method, payload, (*rp)[:0])
	keep(rp, reply.Payload)
	if err != nil {
		var se *zrt.StatusError
		if errors.As(err, &se) && se.Status >= gwir.StatusApplication {
			return &Error{Status: se.Status, Message: se.Message}
		}
		return err
	}
	if err := proto.Unmarshal(reply.Payload, out); err != nil {
		return fmt.Errorf("%s: decoding the reply as %s: %w", method, out.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// keep makes b, grown from the pooled *bp, the buffer that goes back to
// the pool, unless it grew past what is worth keeping (one jumbo datagram).
func keep(bp *[]byte, b []byte) {
	if cap(b) > cap(*bp) && cap(b) <= 64<<10 {
		*bp = b[:0]
	}
}

// buffers holds encoding scratch space; replies and requests are copied
// out of it (Response.Write, Client.Call) before it is reused.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

package engine

import (
	"time"

	"github.com/zerohop/zerohop/proto"
)

// maxReplyExt is the room a reply keeps in front of its payload for its
// extension block: SERVICE_TIME and RETRY_AFTER.
const maxReplyExt = proto.ResponseHeadroom - proto.HeaderLen

// replyPayloadOffset is where a reply's payload starts in the reply
// buffer: after the header, and the room for the reply's extension block
// when the request spoke EXT (a caller without EXT support would answer
// a block with BAD_FRAME, so it gets none).
func replyPayloadOffset(f proto.Frame) int {
	if f.HasExt() {
		return proto.ResponseHeadroom
	}
	return proto.HeaderLen
}

// beginExt reads the request's deadline into req; false when the request
// arrived with no budget left (DEADLINE 0).
func beginExt(req *Request) bool {
	if !req.frame.HasExt() {
		return true
	}
	budget, ok := req.frame.Deadline()
	if !ok {
		return true
	}
	if budget <= 0 {
		return false
	}
	req.deadline = req.arrival + int64(budget)
	return true
}

// replyExt fills x with what a reply to a request that spoke EXT carries:
// how long the server took from the request's arrival to now (Mono
// readings), and RETRY_AFTER.
func replyExt(x *proto.ExtBuilder, arrival, now int64, retryAfter time.Duration) {
	x.Reset()
	x.SetServiceTime(time.Duration(now - arrival))
	if retryAfter > 0 {
		x.SetRetryAfter(retryAfter)
	}
}

// sealReply writes the header (and the extension block, for a request
// that had one) in front of the response payload and returns the reply
// frame (nil when none can be built): TOO_LARGE when the handler wrote
// more than fits. now is the Mono reading that ends the request's service
// time.
func sealReply(req *Request, resp *Response, c *LoopCounters, x *proto.ExtBuilder, now int64) proto.Frame {
	frame := req.frame
	if resp.tooLarge {
		c.TooLarge.Add(1)
		return encodeError(resp.buf[:cap(resp.buf)], frame, proto.StatusTooLarge,
			"response larger than the reply buffer", req.arrival, 0, x)
	}
	h := proto.Header{Kind: proto.KindResponse, RequestID: frame.RequestID(), MethodID: frame.MethodID(), Status: resp.status}
	if !frame.HasExt() {
		f, err := proto.Seal(resp.buf, h)
		if err != nil {
			return nil
		}
		return f
	}
	var f proto.Frame
	var err error
	if resp.retryAfter <= 0 {
		f, err = proto.SealServiceTime(resp.buf, resp.off, h, time.Duration(now-req.arrival))
	} else {
		replyExt(x, req.arrival, now, resp.retryAfter)
		f, err = proto.SealExt(resp.buf, resp.off, h, x)
	}
	if err != nil {
		return nil
	}
	return f
}

// encodeError writes an error reply to frame into dst, with an extension
// block when the request had one.
func encodeError(dst []byte, frame proto.Frame, status proto.Status, msg string, arrival int64, retryAfter time.Duration, x *proto.ExtBuilder) proto.Frame {
	var f proto.Frame
	var err error
	if frame.HasExt() {
		replyExt(x, arrival, Mono(), retryAfter)
		f, err = proto.EncodeErrorExt(dst, frame.RequestID(), frame.MethodID(), status, x, msg)
	} else {
		f, err = proto.EncodeError(dst, frame.RequestID(), frame.MethodID(), status, msg)
	}
	if err != nil {
		return nil
	}
	return f
}

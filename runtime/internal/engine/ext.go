package engine

import "github.com/zerohop/zerohop/proto"

// maxReplyExt is the room a reply keeps in front of its payload for the
// extension block (none until the runtime speaks EXT).
const maxReplyExt = 0

// replyPayloadOffset is where a reply's payload starts in the reply
// buffer: after the header and the room for the reply's extension block.
func replyPayloadOffset(proto.Frame) int { return proto.HeaderLen }

// beginExt reads the request's extension block into req; false when the
// request arrived with its deadline already passed.
func beginExt(req *Request) bool { return true }

// sealReply writes the header in front of the response payload and
// returns the reply frame (nil when none can be built): TOO_LARGE when
// the handler wrote more than fits.
func sealReply(req *Request, resp *Response, c *LoopCounters) proto.Frame {
	frame := req.frame
	if resp.tooLarge {
		c.TooLarge.Add(1)
		f, err := proto.EncodeError(resp.buf[:cap(resp.buf)], frame.RequestID(), frame.MethodID(), proto.StatusTooLarge,
			"response larger than the reply buffer")
		if err != nil {
			return nil
		}
		return f
	}
	f, err := proto.Seal(resp.buf, proto.Header{Kind: proto.KindResponse, RequestID: frame.RequestID(),
		MethodID: frame.MethodID(), Status: resp.status})
	if err != nil {
		return nil
	}
	return f
}

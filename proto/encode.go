package proto

import (
	"encoding/binary"
	"unicode/utf8"
)

// Header holds the fields of a frame header that an encoder writes. Magic,
// version and length are not in it: encoders always write them.
type Header struct {
	Kind      Kind
	RequestID uint64
	MethodID  uint32
	Status    Status
	Flags     Flags
}

// ErrInvalidHeader: an Encode function was asked for a frame that Parse
// would reject (method 0 on a REQUEST, flags other than FlagOneway, a PONG
// status other than serving/draining).
var ErrInvalidHeader = encodeError("proto: encode: header fields not valid for this kind")

// Seal writes header h in front of a payload that the caller already placed
// at frame[HeaderLen:], setting the length field to len(frame)-HeaderLen, and
// returns frame as a Frame. This lets a handler append its payload into a TX
// buffer first and have the header patched in after:
//
//	buf := tx[:proto.HeaderLen]
//	buf = appendPayload(buf)          // must not grow past cap(tx)
//	f, err := proto.Seal(buf, proto.Header{Kind: proto.KindResponse, RequestID: id, MethodID: m})
//
// Seal writes h as given; it checks only sizes.
func Seal(frame []byte, h Header) (Frame, error) {
	if len(frame) < HeaderLen {
		return nil, ErrBufferTooSmall
	}
	n := len(frame) - HeaderLen
	if n > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	binary.BigEndian.PutUint32(frame[magicOffset:], Magic)
	frame[versionOffset] = Version
	binary.BigEndian.PutUint16(frame[lengthOffset:], uint16(n))
	frame[kindOffset] = byte(h.Kind)
	binary.BigEndian.PutUint64(frame[requestIDOffset:], h.RequestID)
	binary.BigEndian.PutUint32(frame[methodIDOffset:], h.MethodID)
	binary.BigEndian.PutUint16(frame[statusOffset:], uint16(h.Status))
	binary.BigEndian.PutUint16(frame[flagsOffset:], uint16(h.Flags))
	return Frame(frame), nil
}

// Encode writes a frame with header h and the given payload into dst and
// returns it as a sub-slice of dst. The payload is copied, and may already
// lie anywhere in dst (even at dst[HeaderLen:], where the copy is a no-op).
// Like Seal it checks only sizes.
func Encode(dst []byte, h Header, payload []byte) (Frame, error) {
	if len(payload) > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	size := HeaderLen + len(payload)
	if len(dst) < size {
		return nil, ErrBufferTooSmall
	}
	copy(dst[HeaderLen:size], payload)
	return Seal(dst[:size], h)
}

// EncodeRequest writes a REQUEST without an extension block (see
// EncodeRequestExt for one). methodID must not be 0 and flags may only hold
// FlagOneway.
func EncodeRequest(dst []byte, requestID uint64, methodID uint32, flags Flags, payload []byte) (Frame, error) {
	if methodID == 0 || flags&^FlagOneway != 0 {
		return nil, ErrInvalidHeader
	}
	return Encode(dst, Header{Kind: KindRequest, RequestID: requestID, MethodID: methodID, Flags: flags}, payload)
}

// EncodeResponse writes a RESPONSE. zerohop echoes the request's method id
// in its responses; v1 does not require it.
func EncodeResponse(dst []byte, requestID uint64, methodID uint32, status Status, payload []byte) (Frame, error) {
	return Encode(dst, Header{Kind: KindResponse, RequestID: requestID, MethodID: methodID, Status: status}, payload)
}

// EncodeError writes a RESPONSE with the given status whose payload is
// field 1 (bytes) holding msg, the error response of v1. msg should be
// UTF-8; it is copied as it is.
func EncodeError(dst []byte, requestID uint64, methodID uint32, status Status, msg string) (Frame, error) {
	payloadLen := errorPayloadLen(len(msg))
	if payloadLen > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	if len(dst) < HeaderLen+payloadLen {
		return nil, ErrBufferTooSmall
	}
	putErrorPayload(dst[HeaderLen:], msg)
	return Seal(dst[:HeaderLen+payloadLen], Header{Kind: KindResponse, RequestID: requestID, MethodID: methodID, Status: status})
}

// EncodePing writes a PING.
func EncodePing(dst []byte, requestID uint64) (Frame, error) {
	return Encode(dst, Header{Kind: KindPing, RequestID: requestID}, nil)
}

// EncodePong writes a PONG; status is PongServing or PongDraining.
func EncodePong(dst []byte, requestID uint64, status Status) (Frame, error) {
	if status != PongServing && status != PongDraining {
		return nil, ErrInvalidHeader
	}
	return Encode(dst, Header{Kind: KindPong, RequestID: requestID, Status: status}, nil)
}

// EncodeBadFrame writes the BAD_FRAME response that the policy asks for when
// Parse(received) returned err of class ErrBadFrame: a RESPONSE with the
// request id and method id of received, status BAD_FRAME, and err's text in
// field 1, cut short (at a UTF-8 boundary, or dropped) so that the response
// is never larger than received. Any other err gives ErrNotAnswerable.
func EncodeBadFrame(dst []byte, received []byte, err error) (Frame, error) {
	e, ok := err.(Error)
	if !ok || !e.Answer() || len(received) < HeaderLen {
		return nil, ErrNotAnswerable
	}
	limit := min(len(dst), len(received))
	if limit < HeaderLen {
		return nil, ErrBufferTooSmall
	}
	msg := e.Error()
	room := min(limit, MaxFrameLen) - HeaderLen
	m := min(len(msg), room-1-varintLen(uint64(len(msg))))
	for m > 0 && m < len(msg) && !utf8.RuneStart(msg[m]) {
		m--
	}
	payloadLen := 0
	if m > 0 {
		msg = msg[:m]
		payloadLen = errorPayloadLen(m)
		putErrorPayload(dst[HeaderLen:], msg)
	}
	hdr := Frame(received)
	return Seal(dst[:HeaderLen+payloadLen], Header{
		Kind:      KindResponse,
		RequestID: hdr.RequestID(),
		MethodID:  hdr.MethodID(),
		Status:    StatusBadFrame,
	})
}

// errorMessageTag is the protobuf tag of field 1, wire type bytes.
const errorMessageTag = 1<<3 | 2

func errorPayloadLen(msgLen int) int { return 1 + varintLen(uint64(msgLen)) + msgLen }

// putErrorPayload writes field 1 = msg at the start of p, which must hold
// errorPayloadLen(len(msg)) bytes.
func putErrorPayload(p []byte, msg string) {
	p[0] = errorMessageTag
	n := 1 + binary.PutUvarint(p[1:], uint64(len(msg)))
	copy(p[n:], msg)
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

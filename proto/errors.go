package proto

// Error is why Parse or Stream rejected input. A returned Error combines a
// reason (ErrShort … ErrSealed) with a class (ErrDrop or ErrBadFrame),
// so that both
//
//	errors.Is(err, proto.ErrMagic)    // which check failed
//	errors.Is(err, proto.ErrBadFrame) // what the policy wants done
//
// work. Error is a one-byte integer: turning it into an error value does not
// allocate, so rejecting hostile input costs nothing on the heap.
type Error uint8

// The classes of an Error.
const (
	// ErrDrop: the input is not a frame this peer may answer; drop it and
	// count it. Also the class of any broken RESPONSE or PONG.
	ErrDrop Error = 0x40
	// ErrBadFrame: the input is a GWIR v1 frame with a bad field; answer it
	// with a RESPONSE of status BAD_FRAME carrying its request id.
	ErrBadFrame Error = 0x80

	classMask  = ErrDrop | ErrBadFrame
	reasonMask = ^classMask
)

// The reasons of an Error, as returned by Parse they carry their class.
const (
	// ErrShort: fewer than HeaderLen bytes.
	ErrShort = Error(1) | ErrDrop
	// ErrMagic: the first four bytes are not "GWIR".
	ErrMagic = Error(2) | ErrDrop
	// ErrVersion: the version byte is not 1.
	ErrVersion = Error(3) | ErrDrop
	// ErrSize: the datagram is not exactly HeaderLen+length bytes long.
	ErrSize Error = 4
	// ErrKind: the kind is not REQUEST, RESPONSE, PING or PONG.
	ErrKind Error = 5
	// ErrMethod: method id 0 on a REQUEST, or not 0 on a PING or PONG.
	ErrMethod Error = 6
	// ErrStatus: status not 0 on a REQUEST or PING, not 0 or 1 on a PONG.
	ErrStatus Error = 7
	// ErrFlags: reserved flag bits (3–15) set, ONEWAY on anything but a
	// REQUEST, or EXT on a PING or PONG.
	ErrFlags Error = 8
	// ErrPingPayload: a PING or PONG with a payload.
	ErrPingPayload Error = 9
	// ErrFrameTooLarge (Stream only): a frame longer than the stream's
	// buffer. The stream cannot go on.
	ErrFrameTooLarge = Error(10) | ErrDrop
	// ErrExtLen: FlagExt is set but the payload is shorter than the 2-byte
	// ext_len, or ext_len is larger than length − 2.
	ErrExtLen Error = 11
	// ErrExtEntries: the extension entries do not exactly fill ext_len (an
	// entry header or value runs past its end).
	ErrExtEntries Error = 12
	// ErrExtRepeated: a tag from 1 to 127 appears twice in the block.
	ErrExtRepeated Error = 13
	// ErrExtSize: a known tag (1–7) whose value has the wrong size.
	ErrExtSize Error = 14
	// ErrSealed: FlagSealed is set. Parse does not open sealed frames: a
	// receiver with the keys (mesh/identity) takes a frame Parse rejected
	// with this reason, checks it with ParseSealed and opens it; one
	// without answers BAD_FRAME, as for any flag it does not know.
	ErrSealed Error = 15
	// ErrSealedPrefix (ParseSealed only): the payload of a sealed frame is
	// shorter than the seal prefix and tag (SealedOverhead), or reserved
	// seal-flag bits are set.
	ErrSealedPrefix Error = 16

	// NumReasons bounds Reason values, for per-reason counter arrays.
	NumReasons = 17
)

var reasonText = [NumReasons]string{
	0:  "proto: invalid error value",
	1:  "proto: parse: shorter than the 24-byte header",
	2:  "proto: parse: wrong magic",
	3:  "proto: parse: unknown version",
	4:  "proto: parse: datagram size is not 24 + length",
	5:  "proto: parse: unknown kind",
	6:  "proto: parse: method id 0 on a REQUEST or not 0 on a PING/PONG",
	7:  "proto: parse: status not allowed for this kind",
	8:  "proto: parse: reserved flag bits set, ONEWAY on a non-REQUEST or EXT on a PING/PONG",
	9:  "proto: parse: PING/PONG with a payload",
	10: "proto: stream: frame longer than the stream buffer",
	11: "proto: parse: extension block: ext_len does not fit in the payload",
	12: "proto: parse: extension block: entries do not exactly fill ext_len",
	13: "proto: parse: extension block: tag 1-127 repeated",
	14: "proto: parse: extension block: known tag with a value of the wrong size",
	15: "proto: parse: SEALED frame (open it with the session's keys, or answer BAD_FRAME)",
	16: "proto: parse sealed: payload shorter than the seal prefix and tag, or reserved seal flags set",
}

func (e Error) Error() string {
	r := e.Reason()
	switch {
	case e == ErrDrop:
		return "proto: drop"
	case e == ErrBadFrame:
		return "proto: bad frame"
	case r != 0 && int(r) < NumReasons:
		return reasonText[r]
	}
	return reasonText[0]
}

// Reason returns e without its class bits: a small number below NumReasons
// that indexes per-reason counters.
func (e Error) Reason() Error { return e & reasonMask }

// Answer reports whether the policy wants the input answered with a
// BAD_FRAME response (class ErrBadFrame) rather than dropped.
func (e Error) Answer() bool { return e&ErrBadFrame != 0 }

// Is makes errors.Is match a class (ErrDrop, ErrBadFrame) against any Error
// of that class, and a reason against an Error with that reason whatever its
// class.
func (e Error) Is(target error) bool {
	t, ok := target.(Error)
	if !ok {
		return false
	}
	if t.Reason() == 0 {
		return t != 0 && e&t == t
	}
	return e.Reason() == t.Reason()
}

// Sentinel errors of the encoders.
var (
	// ErrBufferTooSmall: the destination cannot hold the frame.
	ErrBufferTooSmall = encodeError("proto: encode: buffer too small")
	// ErrPayloadTooLarge: the payload is longer than MaxPayload.
	ErrPayloadTooLarge = encodeError("proto: encode: payload longer than 65535 bytes")
	// ErrNotAnswerable: EncodeBadFrame was given an error that is not of
	// class ErrBadFrame.
	ErrNotAnswerable = encodeError("proto: encode: error is not of class ErrBadFrame")
)

type encodeError string

func (e encodeError) Error() string { return string(e) }

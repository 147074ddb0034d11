package proto

import "encoding/binary"

// Header layout: offsets of the fields of a frame header, all integers
// big-endian.
const (
	magicOffset     = 0
	versionOffset   = 4
	lengthOffset    = 5
	kindOffset      = 7
	requestIDOffset = 8
	methodIDOffset  = 16
	statusOffset    = 20
	flagsOffset     = 22

	// HeaderLen is the size of the fixed frame header; the payload starts
	// right after it.
	HeaderLen = 24

	// Version is the only protocol version this package speaks.
	Version = 1

	// MaxPayload is the largest payload the 16-bit length field can
	// describe. Over UDP the datagram limit is lower (MaxPayloadUDP4/6).
	MaxPayload = 0xFFFF

	// MaxFrameLen is the size of a frame carrying MaxPayload bytes.
	MaxFrameLen = HeaderLen + MaxPayload

	// MaxPayloadUDP4 and MaxPayloadUDP6 are the largest payloads that fit a
	// single UDP datagram over IPv4 (65,507-byte datagrams) and IPv6
	// without jumbograms (65,527-byte datagrams).
	MaxPayloadUDP4 = 65507 - HeaderLen
	MaxPayloadUDP6 = 65527 - HeaderLen
)

// Magic is the value of the first four bytes of every frame: "GWIR".
const Magic uint32 = 0x47574952

// Kind says what a frame is.
type Kind uint8

const (
	// KindRequest calls MethodID; the server answers with a KindResponse
	// carrying the same RequestID (none for a ONEWAY request).
	KindRequest Kind = 1
	// KindResponse answers a request: Status, and the reply payload.
	KindResponse Kind = 2
	// KindPing asks a server whether it serves (no method, no payload).
	KindPing Kind = 3
	// KindPong answers a PING: Status PongServing, or PongDraining during
	// a graceful stop.
	KindPong Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "REQUEST"
	case KindResponse:
		return "RESPONSE"
	case KindPing:
		return "PING"
	case KindPong:
		return "PONG"
	}
	return "KIND(" + itoa(uint64(k)) + ")"
}

// isReply reports whether frames of this kind answer another frame. Broken
// replies are never answered, so two peers cannot bounce errors forever.
func (k Kind) isReply() bool { return k == KindResponse || k == KindPong }

// Flags is the flags field of a header.
type Flags uint16

const (
	// FlagOneway marks a REQUEST whose caller wants no reply.
	FlagOneway Flags = 1 << 0

	// FlagExt says the payload starts with an extension block (see
	// ExtTag). It is allowed on a REQUEST and a RESPONSE.
	FlagExt Flags = 1 << 1

	// FlagSealed marks an authenticated, encrypted frame (see
	// SealedPrefixLen for the layout). Parse rejects it (ErrSealed) so
	// that nothing reads a ciphertext as a payload; ParseSealed checks its
	// clear part for the receiver that holds the keys.
	FlagSealed Flags = 1 << 2

	// flagsUnassigned are bits 3–15, which no kind may set.
	flagsUnassigned = ^(FlagOneway | FlagExt | FlagSealed)
	// flagsRequest and flagsResponse are the flags each kind may carry.
	flagsRequest  = FlagOneway | FlagExt
	flagsResponse = FlagExt
)

// Frame is a view of one GWIR frame: a byte slice that Parse checked, or that
// an Encode function wrote. Its accessors do not re-check lengths, so build a
// Frame only through Parse, Stream or the encoders. A Frame aliases the bytes
// it was made from and is valid as long as they are.
type Frame []byte

// Magic returns the first four bytes as a big-endian integer (Magic, in a
// Frame from Parse).
func (f Frame) Magic() uint32 { return binary.BigEndian.Uint32(f[magicOffset:]) }

// Version returns the protocol version byte.
func (f Frame) Version() uint8 { return f[versionOffset] }

// PayloadLen returns the length field: the number of bytes after the
// header, the extension block included. len(f.Payload()) is the message
// alone.
func (f Frame) PayloadLen() int { return int(binary.BigEndian.Uint16(f[lengthOffset:])) }

// Kind returns the frame kind.
func (f Frame) Kind() Kind { return Kind(f[kindOffset]) }

// RequestID returns the request id chosen by the caller and echoed in replies.
func (f Frame) RequestID() uint64 { return binary.BigEndian.Uint64(f[requestIDOffset:]) }

// MethodID returns the method id (0 for PING and PONG).
func (f Frame) MethodID() uint32 { return binary.BigEndian.Uint32(f[methodIDOffset:]) }

// Status returns the status field (0 in requests).
func (f Frame) Status() Status { return Status(binary.BigEndian.Uint16(f[statusOffset:])) }

// Flags returns the flags field.
func (f Frame) Flags() Flags { return Flags(binary.BigEndian.Uint16(f[flagsOffset:])) }

// Oneway reports whether the caller wants no reply.
func (f Frame) Oneway() bool { return f.Flags()&FlagOneway != 0 }

// HasExt reports whether the frame carries an extension block (FlagExt).
func (f Frame) HasExt() bool { return f.Flags()&FlagExt != 0 }

// Payload returns the message: everything after the header and, with
// FlagExt, after the extension block. It is a sub-slice of the frame, never
// a copy. On the header-only view that Parse returns with an ErrBadFrame
// error it is empty.
func (f Frame) Payload() []byte {
	if f.Flags()&FlagExt == 0 {
		return f[HeaderLen:]
	}
	return f[f.messageOffset():]
}

// Fields returns an iterator over the payload's protobuf fields. In a hot
// loop, declare the iterator and Reset it to f.Payload() instead: the
// returned struct is copied, which costs a few nanoseconds per frame.
func (f Frame) Fields() Fields { return NewFields(f.Payload()) }

// ErrorMessage returns the UTF-8 message of an error response: the last
// field 1 of wire type bytes in the payload, or nil if there is none or the
// payload is malformed.
func (f Frame) ErrorMessage() []byte {
	var msg []byte
	it := f.Fields()
	for it.Next() {
		if fld := it.Field(); fld.Num() == 1 && fld.Type() == BytesType {
			msg = fld.Bytes()
		}
	}
	if it.Err() != nil {
		return nil
	}
	return msg
}

// Parse checks that b holds exactly one valid frame and returns a view of it.
//
// On success the Frame is b itself. On failure the error is an Error:
//   - class ErrDrop (shorter than a header, wrong magic, unknown version, or
//     a broken RESPONSE/PONG): the returned Frame is nil; drop and count.
//   - class ErrBadFrame (magic and version right, but the size, kind,
//     method, status, flags, PING payload or extension block wrong on
//     anything but a reply): the returned Frame is the 24-byte header, from
//     which RequestID and MethodID can be read; answer with EncodeBadFrame.
//
// With FlagExt, Parse also walks the extension block (ExtTag states the
// rules), so that every accessor may trust it afterwards.
//
// Parse never allocates and never panics.
func Parse(b []byte) (Frame, error) {
	if len(b) < HeaderLen {
		return nil, ErrShort
	}
	// Fast path for the common case, a valid REQUEST, from two loads:
	// magic|version|length|kind and method|status|flags. A request with
	// an extension block stays on it and pays only the walk of its block.
	w0 := binary.BigEndian.Uint64(b[0:])
	w2 := binary.BigEndian.Uint64(b[methodIDOffset:])
	if w0>>24 == uint64(Magic)<<8|Version && byte(w0) == byte(KindRequest) &&
		len(b) == HeaderLen+int(uint16(w0>>8)) && w2>>32 != 0 && uint32(w2)&^uint32(flagsRequest) == 0 {
		if uint32(w2)&uint32(FlagExt) == 0 {
			return Frame(b), nil
		}
		if reason := checkExt(b[HeaderLen:]); reason != 0 {
			return Frame(b[:HeaderLen:HeaderLen]), reason | ErrBadFrame
		}
		return Frame(b), nil
	}
	if uint32(w0>>32) != Magic {
		return nil, ErrMagic
	}
	if b[versionOffset] != Version {
		return nil, ErrVersion
	}
	f := Frame(b)
	if reason := check(f, len(b)); reason != 0 {
		if f.Kind().isReply() {
			return nil, reason | ErrDrop
		}
		return f[:HeaderLen:HeaderLen], reason | ErrBadFrame
	}
	return f, nil
}

// check returns the reason a frame whose magic and version are right is
// still invalid, or 0. size is the number of bytes that carry the frame.
func check(f Frame, size int) Error {
	if size != HeaderLen+f.PayloadLen() {
		return ErrSize
	}
	kind := f.Kind()
	method := f.MethodID()
	status := f.Status()
	flags := f.Flags()
	if flags&flagsUnassigned != 0 {
		return ErrFlags
	}
	if flags&FlagSealed != 0 {
		return ErrSealed
	}
	switch kind {
	case KindRequest:
		if method == 0 {
			return ErrMethod
		}
		if status != StatusOK {
			return ErrStatus
		}
		if flags&FlagExt != 0 {
			return checkExt(f[HeaderLen:])
		}
	case KindResponse:
		if flags&^flagsResponse != 0 {
			return ErrFlags
		}
		if flags&FlagExt != 0 {
			return checkExt(f[HeaderLen:])
		}
	case KindPing, KindPong:
		if method != 0 {
			return ErrMethod
		}
		if flags != 0 {
			return ErrFlags
		}
		if f.PayloadLen() != 0 {
			return ErrPingPayload
		}
		if kind == KindPing && status != StatusOK {
			return ErrStatus
		}
		if kind == KindPong && status != PongServing && status != PongDraining {
			return ErrStatus
		}
	default:
		return ErrKind
	}
	return 0
}

// itoa formats v without fmt, for String methods.
func itoa(v uint64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(buf[i:])
}

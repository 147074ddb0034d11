package proto

import "encoding/binary"

// Layout of a sealed frame (FlagSealed). The 24-byte header stays in the
// clear so that routing, request ids and the bad-input policy work as for
// any frame; a 12-byte seal prefix follows; then the AEAD ciphertext of
// what the payload would be without sealing (extension block and message),
// then the AEAD tag:
//
//	0   24  header      length = SealedPrefixLen + len(ciphertext) + SealedTagLen
//	24   4  session id  the receiver's id for the session (u32, never 0)
//	28   1  seal flags  bit 0 key phase; bits 1–7 reserved, 0
//	29   7  packet number  u56, per direction, never reused
//	36   n  ciphertext  of the extension block (with FlagExt) and the message
//	36+n 16 tag
//
// All 36 bytes before the ciphertext are the AEAD's associated data. EXT
// and ONEWAY describe the plaintext. The mesh/identity package does the
// cryptography; this package only checks the clear part (ParseSealed).
const (
	sessionIDOffset   = HeaderLen
	sealFlagsOffset   = HeaderLen + 4
	packetNumOffset   = HeaderLen + 5
	sealFlagsReserved = 0xfe

	// SealedPrefixLen is the size of the seal prefix between the header and
	// the ciphertext: session id, seal flags, packet number.
	SealedPrefixLen = 12
	// SealedHeaderLen is the clear part of a sealed frame, the AEAD's
	// associated data: header and seal prefix.
	SealedHeaderLen = HeaderLen + SealedPrefixLen
	// SealedTagLen is the size of the AEAD tag at the end of a sealed frame
	// (AES-128-GCM and ChaCha20-Poly1305 both use 16 bytes).
	SealedTagLen = 16
	// SealedOverhead is what sealing adds to a frame.
	SealedOverhead = SealedPrefixLen + SealedTagLen
	// MaxPacketNumber is the largest packet number the 7-byte field holds.
	MaxPacketNumber = 1<<56 - 1
)

// Sealed reports whether the frame has FlagSealed.
func (f Frame) Sealed() bool { return f.Flags()&FlagSealed != 0 }

// SessionID returns the session id of a sealed frame (from ParseSealed).
func (f Frame) SessionID() uint32 { return binary.BigEndian.Uint32(f[sessionIDOffset:]) }

// KeyPhase returns the key phase bit of a sealed frame (from ParseSealed).
func (f Frame) KeyPhase() uint8 { return f[sealFlagsOffset] & 1 }

// PacketNumber returns the packet number of a sealed frame (from
// ParseSealed).
func (f Frame) PacketNumber() uint64 {
	return binary.BigEndian.Uint64(f[sealFlagsOffset:]) & MaxPacketNumber
}

// PutSealPrefix writes the seal prefix of a frame whose header is at b[0:]:
// session id, key phase and packet number. b must hold SealedHeaderLen
// bytes; pn must not exceed MaxPacketNumber.
func PutSealPrefix(b []byte, session uint32, phase uint8, pn uint64) {
	_ = b[SealedHeaderLen-1]
	binary.BigEndian.PutUint32(b[sessionIDOffset:], session)
	binary.BigEndian.PutUint64(b[sealFlagsOffset:], uint64(phase&1)<<56|pn&MaxPacketNumber)
}

// ParseSealed checks the clear part of a sealed frame: the header rules of
// Parse for its kind, FlagSealed set, a payload that holds at least the
// seal prefix and the tag, and the reserved seal-flag bits clear. It does
// not look at the ciphertext (the extension block inside is checked by
// Parse once the frame is opened). Only REQUEST and RESPONSE frames can be
// sealed; PING and PONG stay clear so that health checks need no session.
//
// On success the Frame is b. Errors have the classes of Parse: a broken
// REQUEST is ErrBadFrame with the header view, a broken RESPONSE is a drop.
// A frame without FlagSealed is ErrFlags. ParseSealed never allocates and
// never panics.
func ParseSealed(b []byte) (Frame, error) {
	if len(b) < HeaderLen {
		return nil, ErrShort
	}
	if binary.BigEndian.Uint32(b) != Magic {
		return nil, ErrMagic
	}
	if b[versionOffset] != Version {
		return nil, ErrVersion
	}
	f := Frame(b)
	if reason := checkSealed(f, len(b)); reason != 0 {
		if f.Kind().isReply() {
			return nil, reason | ErrDrop
		}
		return f[:HeaderLen:HeaderLen], reason | ErrBadFrame
	}
	return f, nil
}

func checkSealed(f Frame, size int) Error {
	if size != HeaderLen+f.PayloadLen() {
		return ErrSize
	}
	flags := f.Flags()
	if flags&flagsUnassigned != 0 || flags&FlagSealed == 0 {
		return ErrFlags
	}
	switch f.Kind() {
	case KindRequest:
		if f.MethodID() == 0 {
			return ErrMethod
		}
		if f.Status() != StatusOK {
			return ErrStatus
		}
	case KindResponse:
		if flags&^(flagsResponse|FlagSealed) != 0 {
			return ErrFlags
		}
	case KindPing, KindPong:
		return ErrFlags
	default:
		return ErrKind
	}
	if f.PayloadLen() < SealedOverhead || f[sealFlagsOffset]&sealFlagsReserved != 0 {
		return ErrSealedPrefix
	}
	return 0
}

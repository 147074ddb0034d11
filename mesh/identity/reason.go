package identity

// Reason is why a sealed frame was refused, or could not be sealed. It is
// a one-byte error (comparing and returning it does not allocate) that
// indexes per-reason counters below NumReasons; Table.Stats sums them.
type Reason uint8

const (
	_ Reason = iota
	// ReasonHeader: the clear part is not a valid sealed frame
	// (proto.ParseSealed refused it: size, kind, flags, too short for
	// the seal prefix and tag).
	ReasonHeader
	// ReasonUnknownSession: no session has the frame's session id (never
	// established, expired, or closed).
	ReasonUnknownSession
	// ReasonAddress: the session exists but the frame came from another
	// IP address than the peer that did the handshake (a spoofed or
	// moved source).
	ReasonAddress
	// ReasonDirection: a REQUEST on a session this side dialed, or a
	// RESPONSE on one it accepted; or sealing the wrong kind.
	ReasonDirection
	// ReasonAuth: the AEAD refused the frame: forged, corrupted,
	// truncated, a bit flipped anywhere, or sealed under a key this side
	// does not hold (an old generation past its grace window).
	ReasonAuth
	// ReasonReplay: a packet number already opened on this session.
	ReasonReplay
	// ReasonTooOld: a packet number further than ReplayWindow behind the
	// newest one opened.
	ReasonTooOld
	// ReasonRoom: the caller's buffer has no room in front for the seal
	// prefix or behind for the tag, or the frame is not a whole header.
	ReasonRoom
	// ReasonTooLarge: sealing would push the frame past the 65,535-byte
	// length field.
	ReasonTooLarge
	// ReasonExhausted: the session used up its packet numbers or key
	// generations, or met the AEAD's forgery limit; it is closed and the
	// client must handshake again.
	ReasonExhausted
	// ReasonNoSession (client): no live session with that server; call
	// Prepare (the handshake) first.
	ReasonNoSession
	// ReasonUnsealed (strict mode): an unsealed request where sealed frames
	// are required.
	ReasonUnsealed

	// NumReasons bounds Reason values.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonHeader:         "header",
	ReasonUnknownSession: "unknown_session",
	ReasonAddress:        "address",
	ReasonDirection:      "direction",
	ReasonAuth:           "auth",
	ReasonReplay:         "replay",
	ReasonTooOld:         "too_old",
	ReasonRoom:           "room",
	ReasonTooLarge:       "too_large",
	ReasonExhausted:      "exhausted",
	ReasonNoSession:      "no_session",
	ReasonUnsealed:       "unsealed",
}

var reasonText = [NumReasons]string{
	0:                    "identity: invalid reason",
	ReasonHeader:         "identity: open: not a valid sealed frame",
	ReasonUnknownSession: "identity: open: unknown session id",
	ReasonAddress:        "identity: open: frame from an address other than the session's peer",
	ReasonDirection:      "identity: frame kind does not match the session's direction",
	ReasonAuth:           "identity: open: authentication failed (forged, corrupted or truncated frame, or an expired key)",
	ReasonReplay:         "identity: open: replayed packet number",
	ReasonTooOld:         "identity: open: packet number older than the replay window",
	ReasonRoom:           "identity: seal: no room for the seal prefix or tag in the buffer",
	ReasonTooLarge:       "identity: seal: sealed frame longer than 65535 bytes of payload",
	ReasonExhausted:      "identity: session exhausted its packet numbers, keys or forgery budget; handshake again",
	ReasonNoSession:      "identity: seal: no session with this server; handshake first (ClientSealer.Prepare)",
	ReasonUnsealed:       "identity: unsealed request refused: this server requires sealed frames",
}

func (r Reason) Error() string {
	if r < NumReasons {
		return reasonText[r]
	}
	return reasonText[0]
}

// String is the reason's counter label ("replay", "auth", …).
func (r Reason) String() string {
	if r > 0 && r < NumReasons {
		return reasonNames[r]
	}
	return "invalid"
}

package identity

import (
	"context"
	"net/netip"
)

// This file is a copy of the interfaces proposed for package runtime
// (docs/identity.md, "The runtime hook"): runtime defines them and never
// imports mesh; Server and Client below implement them, so the lead can
// move these declarations into runtime unchanged and pass a *Server to
// runtime.WithSealer, a *Client to runtime.WithClientSealer.

// SealMode is how a server with a sealer treats requests that are not
// sealed.
type SealMode uint8

const (
	// SealPermissive: sealed requests are opened and carry their peer's
	// identity; unsealed ones are served as before, with no identity, and
	// counted. For migrating a fleet one side at a time.
	SealPermissive SealMode = 1
	// SealStrict: an unsealed REQUEST is answered DENIED without reaching
	// a handler (on the AF_XDP path it may be dropped and counted before
	// that: the SEALED bit is at a fixed offset, byte 23 of the UDP
	// payload). PING and PONG stay clear in both modes, for health checks.
	SealStrict SealMode = 2
)

func (m SealMode) String() string {
	switch m {
	case SealPermissive:
		return "permissive"
	case SealStrict:
		return "strict"
	}
	return "off"
}

// PeerIdentity is who sent a request, as runtime carries it from
// OpenRequest to the handler (Request.Identity) and to SealReply.
type PeerIdentity struct {
	// ID is the peer's authenticated SPIFFE ID; "" for an unsealed
	// request. The string is made once per session: copying it does not
	// allocate.
	ID string
	// Session is the sealer's handle for the reply, opaque to runtime; 0
	// for an unsealed request.
	Session uint64
}

// Sealed reports whether the request came sealed.
func (p PeerIdentity) Sealed() bool { return p.Session != 0 }

// ServerSealer is what a server's loops call around dispatch.
type ServerSealer interface {
	// Mode says what to do with unsealed requests.
	Mode() SealMode
	// Room is the bytes SealReply needs in the reply buffer before the
	// reply frame (head) and after it (tail).
	Room() (head, tail int)
	// Loop returns the half one event loop uses, called once per loop
	// at start; only that loop calls it afterwards.
	Loop(loop int) ServerLoopSealer
}

// ServerLoopSealer is one loop's sealer. Its methods never block, never
// allocate, and refuse bad input with an error (a Reason here) that
// runtime counts as one drop reason ("sealed"); the per-reason counts
// stay with the sealer (Table.Stats).
type ServerLoopSealer interface {
	// OpenRequest opens, in place, a datagram for which proto.Parse
	// returned ErrSealed, received from from. plain is the plaintext
	// frame, a sub-slice of frame, for proto.Parse and the handler; peer
	// goes to the Request. On error the datagram is dropped — never
	// answered — and its bytes are undefined.
	OpenRequest(frame []byte, from netip.AddrPort) (plain []byte, peer PeerIdentity, err error)
	// SealReply seals, in place, the reply frame buf[start:end] for the
	// session peer came from (head bytes free before start, tail bytes of
	// capacity after end, per Room) and returns the datagram to send.
	// On error the reply is dropped and counted.
	SealReply(buf []byte, start, end int, peer PeerIdentity) (sealed []byte, err error)
}

// ClientSealer is what a client engine calls around its calls.
type ClientSealer interface {
	// Prepare makes sure a live session with the server at data address
	// server exists, running the handshake if not (or if it expires
	// soon). It blocks: runtime calls it on the caller's goroutine, at
	// Dial and before a call's first attempt; with a live session it
	// returns at once without allocating.
	Prepare(ctx context.Context, server netip.AddrPort) error
	// Overhead is what SealRequest adds to a frame.
	Overhead() int
	// Loop returns the half one client loop uses, as ServerSealer.Loop.
	Loop(loop int) ClientLoopSealer
}

// ClientLoopSealer is one client loop's sealer; never blocks or
// allocates.
type ClientLoopSealer interface {
	// SealRequest seals the request frame plain into dst (the transmit
	// buffer, len(plain)+Overhead bytes of capacity, not overlapping
	// plain) under the session with server, leaving plain intact for
	// retransmissions: each transmission is sealed anew, under a new
	// packet number, so a retransmission is not a replay.
	SealRequest(dst, plain []byte, server netip.AddrPort) (sealed []byte, err error)
	// OpenReply opens, in place, a datagram from from for which
	// proto.Parse returned ErrSealed.
	OpenReply(frame []byte, from netip.AddrPort) (plain []byte, peer PeerIdentity, err error)
}

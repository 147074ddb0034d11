package engine

import (
	"net/netip"

	"github.com/zerohop/zerohop/proto"
)

// Identity is who sent a request, as the sealer said when it opened it:
// runtime.PeerIdentity with the engine's name (same fields, so the two
// convert into each other).
type Identity struct {
	ID      string
	Session uint64
}

// Sealed reports whether the request came sealed.
func (i Identity) Sealed() bool { return i.Session != 0 }

// Sealer is one loop's half of runtime.ServerSealer, as the dispatcher
// calls it: only the loop that owns it, never blocking or allocating.
type Sealer interface {
	OpenRequest(frame []byte, from netip.AddrPort) ([]byte, Identity, error)
	SealReply(buf []byte, start, end int, peer Identity) ([]byte, error)
}

// sealing is a dispatcher's sealer and what it needs.
type sealing struct {
	s      Sealer
	strict bool
	// head and tail are the bytes SealReply needs before and after a
	// reply frame; a sealed request's reply is built inside them.
	head, tail int
}

// SetSealer makes d open sealed requests with s and seal their replies,
// which need head bytes before the reply frame and tail after it; strict
// answers unsealed requests DENIED. Before the loop starts.
func (d *Dispatcher) SetSealer(s Sealer, strict bool, head, tail int) {
	d.seal = sealing{s: s, strict: strict, head: head, tail: tail}
}

// room is the head and tail a reply to a request from peer keeps free.
func (d *Dispatcher) room(peer Identity) (head, tail int) {
	if !peer.Sealed() {
		return 0, 0
	}
	return d.seal.head, d.seal.tail
}

// isSealed reports whether err is Parse's verdict on a sealed frame.
func isSealed(err error) bool {
	pe, ok := err.(proto.Error)
	return ok && pe.Reason() == proto.ErrSealed
}

// unsealedDenied is the message of a strict server's DENIED.
const unsealedDenied = "sealed frames required: this server accepts only callers with an identity (zerohop call --identity)"

// dispatchSealing is DispatchParsed for a dispatcher with a sealer: a
// sealed request is opened in place and dispatched with its peer's
// identity, its reply built inside out's head and tail room and sealed;
// an unsealed request is DENIED in strict mode and served, counted, in
// permissive mode. A frame that does not open is dropped (DropSealed),
// never answered: an answer would tell a forger something.
func (d *Dispatcher) dispatchSealing(in []byte, frame proto.Frame, err error, peer netip.AddrPort, path Path, out []byte, sub Submitter) (Outcome, []byte) {
	c := d.c
	if !isSealed(err) {
		d.ident = Identity{}
		if err == nil && frame.Kind() == proto.KindRequest {
			if d.seal.strict {
				c.UnsealedDenied.Add(1)
				return d.reply(frame, path, out, proto.StatusDenied, unsealedDenied, d.arrival.now(), 0)
			}
			c.Unsealed.Add(1)
		}
		return d.dispatch(in, frame, err, peer, path, out, sub)
	}
	full := out[:cap(out)]
	if len(full) < d.seal.head+d.seal.tail+proto.HeaderLen {
		d.srv.Warn.Drop(c, path, DropTruncated, d.queue)
		return None, nil
	}
	plain, id, oerr := d.seal.s.OpenRequest(in, peer)
	if oerr != nil || !id.Sealed() {
		d.srv.Warn.Drop(c, path, DropSealed, d.queue)
		return None, nil
	}
	c.Sealed.Add(1)
	d.ident = id
	frame, err = proto.Parse(plain)
	work := full[d.seal.head : d.seal.head : len(full)-d.seal.tail]
	r, f := d.dispatch(plain, frame, err, peer, path, work, sub)
	d.ident = Identity{}
	if r != Ready {
		return r, nil
	}
	sealed, ok := d.sealIn(full, len(full)-d.seal.tail, f, id, path)
	if !ok {
		return None, nil
	}
	return Ready, sealed
}

// sealIn seals the reply f, built in buf's work area ending at workEnd
// (no three-index slicing inside it, so f's capacity reaches workEnd),
// for peer; false when it could not (counted as DropSealed).
func (d *Dispatcher) sealIn(buf []byte, workEnd int, f []byte, peer Identity, path Path) ([]byte, bool) {
	start := workEnd - cap(f)
	if len(f) == 0 || start < 0 || &buf[start] != &f[0] {
		d.srv.Warn.Drop(d.c, path, DropSealed, d.queue) // the reply is not where it was built: cannot happen
		return nil, false
	}
	sealed, err := d.seal.s.SealReply(buf, start, start+len(f), peer)
	if err != nil {
		d.srv.Warn.Drop(d.c, path, DropSealed, d.queue)
		return nil, false
	}
	return sealed, true
}

// sealJob seals the reply of a blocking request that came sealed, on the
// loop that received it (a Sealer belongs to its loop): a session that
// ended while the handler ran is a counted drop.
func (d *Dispatcher) sealJob(j *Job) {
	if j.Reply == nil || !j.ident.Sealed() || d.seal.s == nil {
		return
	}
	sealed, ok := d.sealIn(j.out, len(j.out)-j.tail, j.Reply, j.ident, j.Path)
	if !ok {
		j.Reply = nil
		return
	}
	j.Reply = sealed
}

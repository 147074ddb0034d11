package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Why a handshake was refused; a *HandshakeError wraps one of them, on the
// side that refused and, through the refusal message, on the side that
// was refused.
var (
	// ErrExpired: an SVID in the exchange is past its NotAfter (or before
	// its NotBefore).
	ErrExpired = errors.New("SVID expired or not yet valid")
	// ErrUntrusted: an SVID that is not a valid SPIFFE X.509-SVID chained
	// to the trust bundle of its trust domain.
	ErrUntrusted = errors.New("SVID not trusted")
	// ErrNotAllowed: a valid SVID whose SPIFFE ID the Config.Allow matcher
	// does not accept.
	ErrNotAllowed = errors.New("SPIFFE ID not allowed")
	// ErrProtocol: the peer broke the handshake's message exchange.
	ErrProtocol = errors.New("handshake protocol error")
)

// verifyPeer checks a peer's certificate chain as a SPIFFE X.509-SVID
// (go-spiffe's x509svid.Verify: one SPIFFE ID URI SAN, a leaf that is not
// a CA, a chain to the bundle of the ID's trust domain, at now) and
// returns its ID. The validity window is tested first so that an expired
// SVID says so instead of failing as an unknown chain.
func verifyPeer(src Source, certs []*x509.Certificate, now time.Time) (spiffeid.ID, error) {
	if len(certs) == 0 {
		return spiffeid.ID{}, fmt.Errorf("%w: no certificate presented", ErrUntrusted)
	}
	leaf := certs[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: not an X.509-SVID: %w", ErrUntrusted, err)
	}
	if now.After(leaf.NotAfter) {
		return id, fmt.Errorf("%w: %s expired at %s", ErrExpired, id, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return id, fmt.Errorf("%w: %s is not valid before %s", ErrExpired, id, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if _, _, err := x509svid.Verify(certs, src, x509svid.WithTime(now)); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return id, fmt.Errorf("%w: %s: %w", ErrExpired, id, err)
		}
		return id, fmt.Errorf("%w: %s: %w", ErrUntrusted, id, err)
	}
	return id, nil
}

// checkOwn reports an own SVID that cannot be presented at now, with the
// fix, before a handshake that would fail on the peer's side.
func checkOwn(certs []*x509.Certificate, now time.Time) error {
	leaf := certs[0]
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("%w: our own SVID expired at %s: renew it (the SPIRE agent, or the files of --identity DIR)", ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("%w: our own SVID is not valid before %s: check the clock", ErrExpired, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

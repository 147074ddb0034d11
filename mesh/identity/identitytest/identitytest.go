package identitytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA is a test certificate authority for one trust domain.
type CA struct {
	TrustDomain spiffeid.TrustDomain
	Cert        *x509.Certificate
	Key         crypto.Signer
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

// NewCA makes a self-signed root for trust domain td, valid from a day
// ago to two days ahead (so tests can move a peer's clock back).
func NewCA(td string) (*CA, error) {
	tdv, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"zerohop test CA"}, CommonName: td},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{tdv.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{TrustDomain: tdv, Cert: cert, Key: key}, nil
}

// Bundle is the CA's trust bundle.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.TrustDomain, []*x509.Certificate{ca.Cert})
}

// Issue makes an X.509-SVID for id (a SPIFFE ID of any trust domain: a CA
// issuing outside its own makes an SVID peers must refuse) valid from
// notBefore to notAfter.
func (ca *CA) Issue(id string, notBefore, notAfter time.Time) (*x509svid.SVID, error) {
	sid, err := spiffeid.FromString(id)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"zerohop test workload"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{sid.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: sid, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// IssueFor is Issue valid from a minute ago for ttl.
func (ca *CA) IssueFor(id string, ttl time.Duration) (*x509svid.SVID, error) {
	now := time.Now()
	return ca.Issue(id, now.Add(-time.Minute), now.Add(ttl))
}

// Source is a Source with a fixed SVID and bundles, which Set replaces.
type Source struct {
	mu      sync.Mutex
	svid    *x509svid.SVID
	bundles *x509bundle.Set
}

// NewSource serves svid and the bundles given.
func NewSource(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *Source {
	return &Source{svid: svid, bundles: x509bundle.NewSet(bundles...)}
}

// Set replaces the SVID.
func (s *Source) Set(svid *x509svid.SVID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid = svid
}

// GetX509SVID implements identity.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, nil
}

// GetX509BundleForTrustDomain implements identity.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundles.GetX509BundleForTrustDomain(td)
}

// EncodeCerts is the PEM of the SVID's chain (cert.pem).
func EncodeCerts(svid *x509svid.SVID) []byte {
	var out []byte
	for _, c := range svid.Certificates {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey is the PKCS#8 PEM of the SVID's key (key.pem).
func EncodeKey(svid *x509svid.SVID) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteDir writes cert.pem, key.pem (mode 0600) and bundle.pem for svid
// and ca into dir, the layout identity.LoadDir reads.
func WriteDir(dir string, svid *x509svid.SVID, ca *CA) error {
	key, err := EncodeKey(svid)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"cert.pem", EncodeCerts(svid), 0o644},
		{"key.pem", key, 0o600},
		{"bundle.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("identitytest: %w", err)
		}
	}
	return nil
}

package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source supplies this workload's X.509 SVID and the trust bundles that
// peers' SVIDs are checked against. Both methods are called at every
// handshake, so a source that rotates its SVID (FileSource reloading,
// the Workload API streaming updates) is picked up by the next handshake;
// established sessions keep their keys until they expire.
// go-spiffe's workloadapi.X509Source implements it, and so does
// mesh/identity/workload.Source.
type Source interface {
	GetX509SVID() (*x509svid.SVID, error)
	GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error)
}

// The files of an identity directory (--identity DIR).
const (
	CertFile   = "cert.pem"   // the SVID: leaf certificate first, then any intermediates, PEM
	KeyFile    = "key.pem"    // the SVID's private key, PKCS#8 PEM ("PRIVATE KEY")
	BundleFile = "bundle.pem" // the trust domain's CA certificates, PEM
)

// FileSource reads the SVID and the bundle of its trust domain from PEM
// files and reloads them when they change (Reload, Watch). A change that
// does not parse — a certificate rewritten before its key, a bundle cut
// short — keeps the previous identity in force and is reported by Reload,
// so a half-written rotation never takes a workload's identity away.
type FileSource struct {
	certFile, keyFile, bundleFile string

	mu    sync.Mutex // serializes reloads
	cur   atomic.Pointer[fileState]
	stamp [3]fileStamp
}

type fileState struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewFileSource loads the SVID from certFile and keyFile and the trust
// bundle of the SVID's trust domain from bundleFile.
func NewFileSource(certFile, keyFile, bundleFile string) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile, bundleFile: bundleFile}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadDir loads the identity directory dir of the --identity flag:
// cert.pem, key.pem and bundle.pem (CertFile, KeyFile, BundleFile).
// Errors name the flag and the file.
func LoadDir(dir string) (*FileSource, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("identity: --identity %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("identity: --identity %s: not a directory (it must hold %s, %s and %s)", dir, CertFile, KeyFile, BundleFile)
	}
	s, err := NewFileSource(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(dir, BundleFile))
	if err != nil {
		return nil, fmt.Errorf("identity: --identity %s: %w", dir, err)
	}
	return s, nil
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// Reload reads the files again if any of them changed (modification time
// or size) since the last successful load, and reports whether it
// installed a new identity. On error the previous identity stays.
func (s *FileSource) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st [3]fileStamp
	for i, p := range []string{s.certFile, s.keyFile, s.bundleFile} {
		if st[i], err = stampOf(p); err != nil {
			return false, fmt.Errorf("identity: load: %w", err)
		}
	}
	if s.cur.Load() != nil && st == s.stamp {
		return false, nil
	}
	svid, err := x509svid.Load(s.certFile, s.keyFile)
	if err != nil {
		return false, fmt.Errorf("identity: load %s and %s: %w", s.certFile, s.keyFile, err)
	}
	td := svid.ID.TrustDomain()
	bundle, err := x509bundle.Load(td, s.bundleFile)
	if err != nil {
		return false, fmt.Errorf("identity: load bundle %s: %w", s.bundleFile, err)
	}
	if len(bundle.X509Authorities()) == 0 {
		return false, fmt.Errorf("identity: load bundle %s: no certificates", s.bundleFile)
	}
	s.cur.Store(&fileState{svid: svid, bundle: bundle})
	s.stamp = st
	return true, nil
}

// Watch calls Reload every interval (1 s if 0) until ctx ends, passing
// each error to onError (which may be nil).
func (s *FileSource) Watch(ctx context.Context, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = time.Second
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			if _, err := s.Reload(); err != nil && onError != nil {
				onError(err)
			}
		}
	}
}

// GetX509SVID returns the SVID last loaded.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.cur.Load().svid, nil
}

// GetX509BundleForTrustDomain returns the bundle last loaded if td is the
// SVID's trust domain.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	st := s.cur.Load()
	if td != st.bundle.TrustDomain() {
		return nil, fmt.Errorf("identity: no trust bundle for trust domain %q (the bundle file is for %q)", td.Name(), st.bundle.TrustDomain().Name())
	}
	return st.bundle, nil
}

// ErrNoSVID: the source has no SVID to present.
var ErrNoSVID = errors.New("identity: no SVID")

// tlsCertificate turns the source's SVID into what crypto/tls presents.
func tlsCertificate(src Source) (*tls.Certificate, *x509svid.SVID, error) {
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoSVID, err)
	}
	if svid == nil || len(svid.Certificates) == 0 {
		return nil, nil, ErrNoSVID
	}
	c := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, x := range svid.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, svid, nil
}

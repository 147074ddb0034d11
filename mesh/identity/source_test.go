package identity_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
)

// TestLoadDirAndReload: an identity directory in the --identity layout
// loads, serves a real handshake, picks up a rotated SVID when the files
// change, keeps the old one when a rewrite is broken, and a bad directory
// is an error that names the flag.
func TestLoadDirAndReload(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, nil, "spiffe://"+td+"/ns/shop/**")
	first := validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web")
	if err := identitytest.WriteDir(dir, first, w.ca); err != nil {
		t.Fatal(err)
	}
	src, err := identity.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := src.GetX509SVID(); got.ID != first.ID {
		t.Fatalf("loaded %s", got.ID)
	}
	cfg := &identity.Config{Source: src, Allow: identity.MustMatcher("spiffe://" + td + "/**"), Table: mustTable(t)}
	s, err := identity.Dial(context.Background(), w.data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w.serverT.Lookup(s.RemoteID()).PeerString() != first.ID.String() {
		t.Fatal("server saw another identity")
	}
	if changed, err := src.Reload(); err != nil || changed {
		t.Fatalf("Reload of unchanged files: %v, %v", changed, err)
	}

	// Rotation: a new SVID (another workload name, so it is visible)
	// written over the files. Bump the modification time in case the
	// filesystem's clock granularity hides the rewrite.
	second := validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web2")
	if err := identitytest.WriteDir(dir, second, w.ca); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	for _, f := range []string{identity.CertFile, identity.KeyFile, identity.BundleFile} {
		if err := os.Chtimes(filepath.Join(dir, f), future, future); err != nil {
			t.Fatal(err)
		}
	}
	if changed, err := src.Reload(); err != nil || !changed {
		t.Fatalf("Reload after rotation: %v, %v", changed, err)
	}
	s2, err := identity.Dial(context.Background(), w.data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.serverT.Lookup(s2.RemoteID()).PeerString(); got != second.ID.String() {
		t.Fatalf("after rotation the server saw %s", got)
	}

	// A half-written rotation: a certificate whose key is still the old
	// one. Reload refuses it and the second SVID stays.
	third := validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web3")
	if err := os.WriteFile(filepath.Join(dir, identity.CertFile), identitytest.EncodeCerts(third), 0o644); err != nil {
		t.Fatal(err)
	}
	later := future.Add(time.Minute)
	_ = os.Chtimes(filepath.Join(dir, identity.CertFile), later, later)
	if changed, err := src.Reload(); err == nil || changed {
		t.Fatalf("Reload of a mismatched key: %v, %v", changed, err)
	}
	if got, _ := src.GetX509SVID(); got.ID != second.ID {
		t.Fatalf("a broken rewrite replaced the identity with %s", got.ID)
	}

	for _, bad := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, identity.CertFile)} {
		_, err := identity.LoadDir(bad)
		if err == nil || !strings.Contains(err.Error(), "--identity "+bad) {
			t.Fatalf("LoadDir(%s): %v", bad, err)
		}
	}
	empty := t.TempDir()
	if _, err := identity.LoadDir(empty); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), identity.CertFile) {
		t.Fatalf("LoadDir(empty dir): %v", err)
	}
}

func TestMatcher(t *testing.T) {
	m := identity.MustMatcher("spiffe://prod.example/ns/shop/sa/web", "spiffe://prod.example/ns/pay/sa/*", "spiffe://prod.example/ns/ops/**")
	for id, want := range map[string]bool{
		"spiffe://prod.example/ns/shop/sa/web":    true,
		"spiffe://prod.example/ns/shop/sa/api":    false,
		"spiffe://prod.example/ns/pay/sa/ledger":  true,
		"spiffe://prod.example/ns/pay/sa/a/b":     false,
		"spiffe://prod.example/ns/ops/sa/x":       true,
		"spiffe://prod.example/ns/ops":            false,
		"spiffe://other.example/ns/shop/sa/web":   false,
		"spiffe://prod.example/ns/shop/sa/web/x":  false,
		"spiffe://prod.example/ns/shop/sa/webby":  false,
		"spiffe://prod.example.evil/ns/shop/sa/w": false,
	} {
		if got := m.MatchString(id); got != want {
			t.Errorf("%s: %v, want %v", id, got, want)
		}
	}
	for _, bad := range []string{"https://x/y", "spiffe://Bad Domain/x", "spiffe://td/a/**/b", "spiffe://td/a//b", "spiffe://td/[x"} {
		if _, err := identity.NewMatcher(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
)

// identityDir writes an identity directory for id issued by ca.
func identityDir(t *testing.T, ca *identitytest.CA, id string) string {
	t.Helper()
	svid, err := ca.IssueFor(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := identitytest.WriteDir(dir, svid, ca); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServeIdentity: serve --identity --require-sealed --allow takes
// handshakes from the callers it allows; call --identity is served and
// sealed, call without one is DENIED, a caller --allow leaves out is
// refused at the handshake with the reason; zerohop stat shows the
// session with the caller's SPIFFE ID, its packets and the refusals.
func TestServeIdentity(t *testing.T) {
	ca, err := identitytest.NewCA("test.zerohop")
	if err != nil {
		t.Fatal(err)
	}
	const web, lab = "spiffe://test.zerohop/ns/shop/sa/web", "spiffe://test.zerohop/ns/lab/sa/x"
	admin := "unix:" + t.TempDir() + "/admin.sock"
	srv, logs := startServeInProcess(t, nil, "--addr", "127.0.0.1:0", "--backend", "uring", "--admin", admin,
		"--identity", identityDir(t, ca, "spiffe://test.zerohop/ns/shop/sa/kv"), "--require-sealed",
		"--allow", "spiffe://test.zerohop/ns/shop/sa/*")
	addr := srv.Addr().String()
	call := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := callCommand(context.Background(), &out, &errOut, append([]string{"--addr", addr, "--timeout", "5s"}, args...))
		return out.String(), errOut.String(), code
	}
	webDir := identityDir(t, ca, web)
	for i := 0; i < 3; i++ {
		if out, errOut, code := call("--identity", webDir, echo.EchoMethod, "--field", "1=7"); code != 0 || !strings.Contains(out, "status OK") {
			t.Fatalf("sealed call: exit %d\n%s%s\nserve:\n%s", code, out, errOut, logs.String())
		}
	}
	if out, _, code := call(echo.EchoMethod, "--field", "1=7"); code != 1 || !strings.Contains(out, "status DENIED: sealed frames required") {
		t.Fatalf("unsealed call: exit %d: %s", code, out)
	}
	if _, errOut, code := call("--identity", identityDir(t, ca, lab), echo.EchoMethod); code != 1 ||
		!strings.Contains(errOut, "refused by the peer") || !strings.Contains(errOut, "not allowed") {
		t.Fatalf("call by an identity --allow leaves out: exit %d: %s", code, errOut)
	}

	var out, errOut bytes.Buffer
	if code := stat(&out, &errOut, []string{"--admin", admin, "--json"}); code != 0 {
		t.Fatalf("stat: exit %d: %s", code, errOut.String())
	}
	rep := decodeStat(t, out.Bytes())
	s := rep.Sessions
	if s == nil {
		t.Fatalf("no sessions section in /stat: %s", out.String())
	}
	// Each call made its own handshake (one process per call); each
	// session saw one sealed request and sealed one reply.
	if len(s.Sessions) != 3 || s.Handshakes != 3 || s.HandshakesRefused != 1 {
		t.Fatalf("sessions %+v, handshakes %d, refused %d", s.Sessions, s.Handshakes, s.HandshakesRefused)
	}
	for _, x := range s.Sessions {
		if x.Peer != web || x.Role != "server" || x.Opened != 1 || x.Sealed != 1 || x.Replays != 0 {
			t.Fatalf("session %+v", x)
		}
	}
	if t0 := rep.Server.Total; t0.Sealed != 3 || t0.UnsealedDenied < 1 {
		t.Fatalf("server counted %d sealed, %d unsealed denied", t0.Sealed, t0.UnsealedDenied)
	}
	out.Reset()
	if code := stat(&out, &errOut, []string{"--admin", admin}); code != 0 {
		t.Fatalf("stat: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"peer identity", web, "replays rejected", "handshakes", "unsealed denied"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stat's table lacks %q:\n%s", want, out.String())
		}
	}
}

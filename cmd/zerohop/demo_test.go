package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/topo"
)

// The demo's serving part as root: zerohop serve on AF_XDP in one
// namespace, the burst of calls from the other, a graceful stop.
func TestDemoServesAcrossNamespaces(t *testing.T) {
	tp := topo.New(t, topo.Config{TxChecksumOff: true})
	var out, errOut bytes.Buffer
	if code := demoNamespaces(context.Background(), &out, &errOut, os.Args[0], []string{benchChildEnv + "=1"}, tp); code != 0 {
		t.Fatalf("demo exited %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"backend=xsk", "field 1 = 42", "2000 answered correctly", "shutting down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	// The server's exit counters saw every call (more when the client
	// retransmitted one: delivery is at least once).
	m := regexp.MustCompile(`requests=(\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no request count in the server's exit log:\n%s", out.String())
	}
	if n, _ := strconv.Atoi(m[1]); n < 2001 {
		t.Errorf("server counted %d requests, want ≥ 2001", n)
	}
}

// Without root the demo serves on loopback with io_uring sockets.
func TestDemoLoopback(t *testing.T) {
	var out bytes.Buffer
	if code := demoLoopback(context.Background(), &out); code != 0 {
		t.Fatalf("demo exited %d\n%s", code, out.String())
	}
	for _, want := range []string{"backend=uring", "field 1 = 42", "2000 answered correctly"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

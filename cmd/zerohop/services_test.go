package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// An etcd that does not answer: services exits 1 with one line on stderr
// naming --etcd and what to do (reachable client URLs, a longer
// --timeout), and prints no empty table that would read as "nothing is
// registered".
func TestServicesUnreachableEtcd(t *testing.T) {
	// A port nothing listens on: the connection is refused until the
	// timeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	var out, errOut bytes.Buffer
	code := servicesCommand(context.Background(), &out, &errOut, []string{"--no-node-table", "--etcd", url, "--timeout", "500ms"})
	msg := errOut.String()
	if code != exitFailure {
		t.Errorf("exit %d, want %d; stderr %q", code, exitFailure, msg)
	}
	for _, want := range []string{"zerohop services:", "--etcd " + url, "--timeout", "reachable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q: %q", want, msg)
		}
	}
	if strings.Count(msg, "\n") != 1 {
		t.Errorf("want one line on stderr, got %q", msg)
	}
	if strings.Contains(out.String(), "SOURCE") {
		t.Errorf("an empty table printed although no source was read:\n%s", out.String())
	}
}

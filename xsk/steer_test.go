package xsk_test

import (
	"os"
	"testing"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/xsk"
)

// The internal tests of package xsk run on the real steering program too:
// they reach it through xsk.AttachSteering (see testbed_test.go for why it
// is a hook and not an import).
func init() {
	xsk.AttachSteering = func(t testing.TB, e topo.Endpoint, port uint16) (xsk.XSKMap, string) {
		p := attachSteering(t, e, port)
		return socketMap{p}, p.Mode().String()
	}
}

// attachSteering attaches the steering program to e's interface inside e's
// namespace and registers a service on port; the test closes it.
// ZEROHOP_XDP_MODE=generic forces generic (skb) mode, to exercise that path
// by hand; by default native mode is used (veth has it).
func attachSteering(t testing.TB, e topo.Endpoint, port uint16) *bpf.Program {
	t.Helper()
	opts := bpf.Options{}
	if os.Getenv("ZEROHOP_XDP_MODE") == "generic" {
		opts.Mode = bpf.ModeGeneric
	}
	var p *bpf.Program
	if err := e.Host.Do(func() (err error) {
		p, err = bpf.Attach(e.Iface, opts)
		return err
	}); err != nil {
		t.Fatalf("attaching the steering program to %s: %v", e.Iface, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing the steering program: %v", err)
		}
	})
	if err := p.AddService(bpf.Service{Port: port, ID: uint32(port)}); err != nil {
		t.Fatal(err)
	}
	return p
}

// socketMap lets xsk.Socket.Register put a socket into the program's XSKMAP
// through bpf.Program.SetSocket (the map itself is not exported by bpf).
type socketMap struct{ m *bpf.Program }

func (s socketMap) Put(key, value any) error {
	return s.m.SetSocket(int(key.(uint32)), int(value.(uint32)))
}

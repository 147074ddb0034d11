package etcd_test

import (
	"testing"

	"github.com/zerohop/zerohop/mesh/discovery/etcd/etcdtest"
	"github.com/zerohop/zerohop/runtime"
)

// Against Debian's etcd (3.4 on bookworm) in a process of its own: the
// v3.7 client's registration and resolution work on the server version a
// node is likely to run.
func TestBinaryEtcdRegisterResolve(t *testing.T) {
	srv := etcdtest.StartBinary(t, etcdtest.BinaryConfig{})
	cli := etcdtest.Client(t, srv.Endpoint)
	reg, _ := newRegistry(t, cli)
	g := register(t, reg, ep("10.0.0.1:7000"))
	register(t, reg, runtime.Endpoint{Addr: ep("[fd00::1]:7000").Addr, Weight: 2})
	rec, _, _ := resolve(t, etcdtest.Client(t, srv.Endpoint))
	rec.Wait(t, wait, "both endpoints", addrsAre("10.0.0.1:7000", "[fd00::1]:7000"))
	if err := g.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the withdrawn endpoint gone", addrsAre("[fd00::1]:7000"))
}

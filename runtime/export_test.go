package runtime

import (
	"net/netip"
	"testing"

	"github.com/zerohop/zerohop/runtime/internal/engine"
)

// DispatchForTest returns the request path of a server made with opts
// (the demo Echo methods registered, WithSealer's sealer installed as a
// loop would install it), outside any loop and backend: for benchmarks
// of package runtime_test, which can import what package runtime cannot
// (mesh/identity). It returns the reply, nil when there is none.
func DispatchForTest(tb testing.TB, opts ...Option) func(in []byte, peer netip.AddrPort, out []byte) []byte {
	s := benchServer(tb, opts...)
	d := benchDispatcher(s)
	if sl := s.cfg.sealer; sl != nil {
		head, tail := sl.Room()
		d.SetSealer(serverLoopSealer{sl.Loop(0)}, sl.Mode() == SealStrict, head, tail)
	}
	return func(in []byte, peer netip.AddrPort, out []byte) []byte {
		r, f := d.Dispatch(in, peer, engine.PathUDP, out, nil)
		if r != engine.Ready {
			return nil
		}
		return f
	}
}

// RaceEnabled reports whether the race detector is on (allocation counts
// do not hold under it).
const RaceEnabled = raceEnabled

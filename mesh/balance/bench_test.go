package balance

import (
	"testing"
	"time"

	"github.com/zerohop/zerohop/runtime"
)

// BenchmarkPick is the picker's cost per pick over 16 endpoints (equal
// weights, and weights 1–3), with the estimates warm, from parallel
// goroutines; Done is the cost of folding one result in.
func BenchmarkPick(b *testing.B) {
	for _, tc := range []struct {
		name    string
		builder runtime.BalancerBuilder
		weights bool
	}{
		{"p2c", P2C(), false},
		{"p2c/weighted", P2C(), true},
		{"roundrobin", RoundRobin(), false},
		{"roundrobin/weighted", RoundRobin(), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			eps := addrs(16, func(i int, e *runtime.Endpoint) {
				if tc.weights {
					e.Weight = uint32(1 + i%3)
				}
			})
			c, scs, _ := setup(b, tc.builder, eps...)
			for i, sc := range scs {
				c.done(sc, runtime.AttemptResult{Answered: true, ServiceTime: time.Duration(10+i) * time.Microsecond})
			}
			p := c.picker.Load().p
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				info := &runtime.PickInfo{}
				for pb.Next() {
					if _, err := p.Pick(info); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("p2c/done", func(b *testing.B) {
		c, scs, _ := setup(b, P2C(), addrs(16)...)
		r := &runtime.AttemptResult{Answered: true, ServiceTime: 12 * time.Microsecond}
		bal := c.balancer
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			bal.Done(scs[i&15], r)
		}
	})
}

package balance

import (
	"time"

	"github.com/zerohop/zerohop/runtime"
)

// pickable returns the SubConns a picker chooses from: the serving ones,
// or the draining ones when none serves; never the unhealthy ones.
func pickable(subconns []*runtime.SubConn) []*runtime.SubConn {
	var serving, draining []*runtime.SubConn
	for _, sc := range subconns {
		switch sc.Endpoint().Health {
		case runtime.HealthServing:
			serving = append(serving, sc)
		case runtime.HealthDraining:
			draining = append(draining, sc)
		}
	}
	if len(serving) == 0 {
		return draining
	}
	return serving
}

// weightOf is an endpoint's weight, 0 counting as 1.
func weightOf(sc *runtime.SubConn) uint32 {
	if w := sc.Endpoint().Weight; w > 0 {
		return w
	}
	return 1
}

// epoch anchors monoNs; time.Since reads the monotonic clock.
var epoch = time.Now()

// monoNs is the monotonic time in nanoseconds since the package started,
// without allocating (a vDSO clock read).
func monoNs() int64 { return int64(time.Since(epoch)) }

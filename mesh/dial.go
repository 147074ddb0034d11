package mesh

import (
	"errors"
	"fmt"

	"github.com/zerohop/zerohop/mesh/balance"
	"github.com/zerohop/zerohop/mesh/health"
	"github.com/zerohop/zerohop/runtime"
)

// DefaultBalancer returns the mesh's default balancer builder:
// health.Wrap(balance.P2C(), health.DefaultConfig()). Each DialService
// client should get its own (a Builder's Stats cover every client it
// serves).
func DefaultBalancer() *health.Builder {
	b, err := health.Wrap(balance.P2C(), health.DefaultConfig())
	if err != nil {
		panic(fmt.Sprintf("mesh: the default health configuration is invalid: %v", err)) // a broken invariant
	}
	return b
}

// DialService returns a client of the service named name whose endpoints
// come from resolver, picked by DefaultBalancer: p2c over peak-EWMA, only
// among endpoints that pass active probes and passive outlier detection,
// with failed attempts failed over within the retry budget (runtime's
// defaults: 20 % of calls over 10 s, plus 10 a second). opts are
// runtime's client options, applied after these defaults, so a
// runtime.WithBalancer among them replaces the default balancer.
func DialService(name string, resolver runtime.ResolverBuilder, opts ...runtime.ClientOption) (*runtime.Client, error) {
	if resolver == nil {
		return nil, errors.New("mesh: DialService " + name + ": nil resolver (mesh/discovery has static, etcd, kubernetes and node resolvers)")
	}
	all := append([]runtime.ClientOption{runtime.WithResolver(resolver), runtime.WithBalancer(DefaultBalancer())}, opts...)
	return runtime.DialService(name, all...)
}

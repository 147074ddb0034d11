package discovery

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/zerohop/zerohop/runtime"
)

// Set is one service's endpoints keyed by what identifies each one at its
// source: an etcd key, a file's address column, an address:port merged
// from EndpointSlices. Sources keep a Set up to date with their events and
// push Set.State after each change, so every update is complete.
type Set map[string]runtime.Endpoint

// State returns the endpoints of s in key order, so that two equal sets
// give equal states whatever order the source delivered them in. The
// slice is new; the endpoints' Attributes maps are shared with s (they are
// read-only once handed over).
func (s Set) State() runtime.ResolverState {
	keys := slices.Sorted(maps.Keys(s))
	eps := make([]runtime.Endpoint, 0, len(keys))
	for _, k := range keys {
		eps = append(eps, s[k])
	}
	return runtime.ResolverState{Endpoints: eps}
}

// Equal reports whether a and b describe the same endpoint in every
// field, attributes included.
func Equal(a, b runtime.Endpoint) bool {
	return a.Addr == b.Addr && a.Weight == b.Weight && a.Zone == b.Zone &&
		a.Version == b.Version && a.Health == b.Health && maps.Equal(a.Attributes, b.Attributes)
}

// EqualStates reports whether a and b hold equal endpoints in the same
// order.
func EqualStates(a, b runtime.ResolverState) bool {
	return slices.EqualFunc(a.Endpoints, b.Endpoints, Equal)
}

// ParseHealth reads the names runtime.EndpointHealth.String gives
// ("serving", "draining", "unhealthy"), which is how files and etcd values
// spell an endpoint's health.
func ParseHealth(s string) (runtime.EndpointHealth, error) {
	for _, h := range []runtime.EndpointHealth{runtime.HealthServing, runtime.HealthDraining, runtime.HealthUnhealthy} {
		if s == h.String() {
			return h, nil
		}
	}
	return 0, fmt.Errorf("health %q: want serving, draining or unhealthy", s)
}

// ValidService checks a service name that a source uses inside keys or
// paths: not empty, no '/', no whitespace or control characters.
func ValidService(service string) error {
	if service == "" {
		return fmt.Errorf("service name is empty")
	}
	if i := strings.IndexFunc(service, func(r rune) bool { return r == '/' || r <= ' ' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("service name %q: character %q at %d is not allowed", service, service[i], i)
	}
	return nil
}

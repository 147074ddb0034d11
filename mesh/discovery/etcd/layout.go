package etcd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// DefaultPrefix is where services live in etcd unless WithPrefix says
// otherwise.
const DefaultPrefix = "/zerohop/services/"

// AttrKey is the attribute that holds an endpoint's etcd key.
const AttrKey = "etcd.key"

// ServicePrefix returns the prefix under which service's endpoints are
// keys: prefix + service + "/".
func ServicePrefix(prefix, service string) string { return prefix + service + "/" }

// Key returns the key of service's endpoint at addr.
func Key(prefix, service string, addr netip.AddrPort) string {
	return ServicePrefix(prefix, service) + addr.String()
}

// value is the JSON form of an endpoint in etcd.
type value struct {
	Addr       string            `json:"addr"`
	Weight     uint32            `json:"weight,omitempty"`
	Zone       string            `json:"zone,omitempty"`
	Version    string            `json:"version,omitempty"`
	Health     string            `json:"health,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// EncodeEndpoint returns the JSON value of ep (see the package doc).
func EncodeEndpoint(ep runtime.Endpoint) ([]byte, error) {
	if !ep.Addr.IsValid() || ep.Addr.Port() == 0 {
		return nil, fmt.Errorf("endpoint address %v: not a valid address with a port", ep.Addr)
	}
	v := value{Addr: ep.Addr.String(), Weight: ep.Weight, Zone: ep.Zone, Version: ep.Version, Attributes: ep.Attributes}
	if ep.Health != runtime.HealthServing {
		v.Health = ep.Health.String()
	}
	return json.Marshal(v)
}

// DecodeEndpoint reads the value stored at key, which must be an
// endpoint key under servicePrefix (ServicePrefix). The endpoint's
// Attributes get AttrKey set to key.
func DecodeEndpoint(servicePrefix, key string, data []byte) (runtime.Endpoint, error) {
	var ep runtime.Endpoint
	addrText, ok := strings.CutPrefix(key, servicePrefix)
	if !ok || addrText == "" || strings.Contains(addrText, "/") {
		return ep, fmt.Errorf("key %q: not <service prefix>/<addr> under %q", key, servicePrefix)
	}
	var v value
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return ep, fmt.Errorf("key %q: value: %w", key, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ep, fmt.Errorf("key %q: value: data after the JSON object", key)
	}
	addr, err := netip.ParseAddrPort(v.Addr)
	if err != nil || addr.Port() == 0 {
		return ep, fmt.Errorf("key %q: addr %q: want IPv4:port or [IPv6]:port with a port other than 0", key, v.Addr)
	}
	if addr.String() != addrText {
		return ep, fmt.Errorf("key %q: addr %q in the value differs from the key", key, v.Addr)
	}
	ep = runtime.Endpoint{Addr: addr, Weight: v.Weight, Zone: v.Zone, Version: v.Version}
	if v.Health != "" {
		if ep.Health, err = discovery.ParseHealth(v.Health); err != nil {
			return runtime.Endpoint{}, fmt.Errorf("key %q: %w", key, err)
		}
	}
	ep.Attributes = make(map[string]string, len(v.Attributes)+1)
	for k, val := range v.Attributes {
		ep.Attributes[k] = val
	}
	ep.Attributes[AttrKey] = key
	return ep, nil
}

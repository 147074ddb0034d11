package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// Attributes an endpoint gets from its EndpointSlice.
const (
	AttrSlice    = "kubernetes.slice"
	AttrPod      = "kubernetes.pod"
	AttrNode     = "kubernetes.node"
	AttrHostname = "kubernetes.hostname"
	AttrForZones = "kubernetes.forZones"
	AttrForNodes = "kubernetes.forNodes"
)

// merged is what the slices of one Service resolve to.
type merged struct {
	set discovery.Set
	// source names the slice each entry of set came from, for choosing
	// between duplicates the same way whatever order slices arrive in.
	source map[string]string
	// skipped counts endpoints left out: FQDN slices, bad addresses.
	skipped int
	// portless counts slices left out for want of the port.
	portless int
	// ports are the port names of the slices without the wanted one.
	ports []string
}

// merge resolves the slices of one Service (all labelled with its name)
// with port named port, as the package doc describes.
func merge(items []*discoveryv1.EndpointSlice, port string) merged {
	m := merged{set: discovery.Set{}, source: map[string]string{}}
	for _, s := range items {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			m.skipped += len(s.Endpoints)
			continue
		}
		num, ok := pickPort(s.Ports, port)
		if !ok {
			m.portless++
			m.ports = append(m.ports, portNames(s.Ports)...)
			continue
		}
		for i := range s.Endpoints {
			ep, ok := endpoint(s, &s.Endpoints[i], num)
			if !ok {
				m.skipped++
				continue
			}
			m.add(s.Name, ep)
		}
	}
	return m
}

// add keeps one endpoint per address: the healthier, and between equals
// the one from the slice whose name sorts first.
func (m *merged) add(slice string, ep runtime.Endpoint) {
	key := ep.Addr.String()
	if old, dup := m.set[key]; dup {
		if old.Health < ep.Health || (old.Health == ep.Health && m.source[key] < slice) {
			return
		}
	}
	m.set[key] = ep
	m.source[key] = slice
}

// problem says why slices that exist gave no endpoint for want of the
// port, or "" when that is not the case.
func (m *merged) problem(service, namespace, port string) string {
	if m.portless == 0 || len(m.set) > 0 {
		return ""
	}
	slices.Sort(m.ports)
	return fmt.Sprintf("kubernetes: service %s/%s: no EndpointSlice port %s (its slices have %s); name the port with kubernetes.WithPort",
		namespace, service, portLabel(port), strings.Join(slices.Compact(m.ports), ", "))
}

func portLabel(name string) string {
	if name == "" {
		return "(unnamed, or the only one)"
	}
	return fmt.Sprintf("%q", name)
}

func portNames(ports []discoveryv1.EndpointPort) []string {
	names := make([]string, 0, len(ports))
	for _, p := range ports {
		if p.Name == nil || *p.Name == "" {
			names = append(names, "(unnamed)")
		} else {
			names = append(names, fmt.Sprintf("%q", *p.Name))
		}
	}
	if len(names) == 0 {
		names = append(names, "none")
	}
	return names
}

// pickPort finds the port named name; "" means the only port, or else the
// unnamed one. A port without a number (all ports) does not count.
func pickPort(ports []discoveryv1.EndpointPort, name string) (uint16, bool) {
	found := -1
	for i, p := range ports {
		pname := ""
		if p.Name != nil {
			pname = *p.Name
		}
		if pname == name || (name == "" && len(ports) == 1) {
			found = i
			break
		}
	}
	if found < 0 || ports[found].Port == nil || *ports[found].Port <= 0 || *ports[found].Port > 65535 {
		return 0, false
	}
	return uint16(*ports[found].Port), true
}

// endpoint maps one slice endpoint; false when its address is unusable.
func endpoint(s *discoveryv1.EndpointSlice, e *discoveryv1.Endpoint, port uint16) (runtime.Endpoint, bool) {
	if len(e.Addresses) == 0 {
		return runtime.Endpoint{}, false
	}
	addr, err := netip.ParseAddr(e.Addresses[0])
	if err != nil || addr.Zone() != "" {
		return runtime.Endpoint{}, false
	}
	addr = addr.Unmap()
	if addr.Is4() != (s.AddressType == discoveryv1.AddressTypeIPv4) {
		return runtime.Endpoint{}, false
	}
	ep := runtime.Endpoint{
		Addr:       netip.AddrPortFrom(addr, port),
		Health:     health(e.Conditions),
		Attributes: map[string]string{AttrSlice: s.Name},
	}
	if e.Zone != nil {
		ep.Zone = *e.Zone
	}
	if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
		ep.Attributes[AttrPod] = e.TargetRef.Name
	}
	if e.NodeName != nil {
		ep.Attributes[AttrNode] = *e.NodeName
	}
	if e.Hostname != nil {
		ep.Attributes[AttrHostname] = *e.Hostname
	}
	if e.Hints != nil {
		setNames(ep.Attributes, AttrForZones, e.Hints.ForZones, func(z discoveryv1.ForZone) string { return z.Name })
		setNames(ep.Attributes, AttrForNodes, e.Hints.ForNodes, func(n discoveryv1.ForNode) string { return n.Name })
	}
	return ep, true
}

func setNames[T any](attrs map[string]string, key string, items []T, name func(T) string) {
	if len(items) == 0 {
		return
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = name(it)
	}
	attrs[key] = strings.Join(names, ",")
}

// health maps conditions as the package doc says, with the API's defaults
// for absent fields.
func health(c discoveryv1.EndpointConditions) runtime.EndpointHealth {
	ready, serving, terminating := orDefault(c.Ready, true), orDefault(c.Serving, true), orDefault(c.Terminating, false)
	switch {
	case ready:
		return runtime.HealthServing
	case serving && terminating:
		return runtime.HealthDraining
	}
	return runtime.HealthUnhealthy
}

func orDefault(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

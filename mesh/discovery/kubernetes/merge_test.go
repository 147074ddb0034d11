package kubernetes

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zerohop/zerohop/runtime"
)

func ptr[T any](v T) *T { return &v }

func port(name string, n int32) discoveryv1.EndpointPort {
	p := discoveryv1.EndpointPort{Port: ptr(n), Protocol: ptr(corev1.ProtocolUDP)}
	if name != "" {
		p.Name = ptr(name)
	}
	return p
}

func slice(name string, typ discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		AddressType: typ,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func conds(ready, serving, terminating *bool) discoveryv1.EndpointConditions {
	return discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
}

func TestHealthFollowsTheConditions(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	for _, tc := range []struct {
		name string
		c    discoveryv1.EndpointConditions
		want runtime.EndpointHealth
	}{
		{"all absent: ready by default", conds(nil, nil, nil), runtime.HealthServing},
		{"ready", conds(yes, yes, no), runtime.HealthServing},
		{"ready though terminating (publishNotReadyAddresses)", conds(yes, yes, yes), runtime.HealthServing},
		{"terminating, still serving", conds(no, yes, yes), runtime.HealthDraining},
		{"terminating, serving absent (true)", conds(no, nil, yes), runtime.HealthDraining},
		{"terminating, not serving", conds(no, no, yes), runtime.HealthUnhealthy},
		{"not ready, not terminating", conds(no, yes, no), runtime.HealthUnhealthy},
		{"not ready, rest absent", conds(no, nil, nil), runtime.HealthUnhealthy},
	} {
		if got := health(tc.c); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMergeMapsAddressesPortsAndAttributes(t *testing.T) {
	gwir := []discoveryv1.EndpointPort{port("http", 80), port("gwir", 7000)}
	v4 := slice("echo-v4", discoveryv1.AddressTypeIPv4, gwir,
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.1", "10.0.0.99"}, Zone: ptr("eu-1a"), NodeName: ptr("node-1"),
			Hostname:  ptr("h1"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "echo-1"},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "eu-1a"}, {Name: "eu-1b"}}, ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}}},
		discoveryv1.Endpoint{Addresses: []string{"fd00::5"}}, // an IPv6 address in an IPv4 slice
		discoveryv1.Endpoint{},                               // no address
	)
	v6 := slice("echo-v6", discoveryv1.AddressTypeIPv6, gwir,
		discoveryv1.Endpoint{Addresses: []string{"fd00::1"}, Conditions: conds(ptr(false), ptr(true), ptr(true))})
	fqdn := slice("echo-fqdn", discoveryv1.AddressTypeFQDN, gwir, discoveryv1.Endpoint{Addresses: []string{"echo.example"}})
	other := slice("echo-http", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{port("http", 80)},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.7"}})

	m := merge([]*discoveryv1.EndpointSlice{v6, fqdn, v4, other}, "gwir")
	state := m.set.State()
	var addrs []string
	for _, ep := range state.Endpoints {
		addrs = append(addrs, ep.Addr.String())
	}
	if want := []string{"10.0.0.1:7000", "[fd00::1]:7000"}; !slices.Equal(addrs, want) {
		t.Fatalf("addresses %v, want %v (dual stack, first address only)", addrs, want)
	}
	a := state.Endpoints[0]
	if a.Zone != "eu-1a" || a.Health != runtime.HealthServing || a.Attributes[AttrPod] != "echo-1" || a.Attributes[AttrNode] != "node-1" ||
		a.Attributes[AttrHostname] != "h1" || a.Attributes[AttrSlice] != "echo-v4" ||
		a.Attributes[AttrForZones] != "eu-1a,eu-1b" || a.Attributes[AttrForNodes] != "node-1" {
		t.Fatalf("IPv4 endpoint %+v", a)
	}
	if b := state.Endpoints[1]; b.Health != runtime.HealthDraining || b.Zone != "" {
		t.Fatalf("IPv6 endpoint %+v, want draining without zone", b)
	}
	if m.skipped != 3 || m.portless != 1 {
		t.Fatalf("skipped %d (want 3: wrong family, no address, FQDN), portless %d (want 1)", m.skipped, m.portless)
	}
	if p := m.problem("echo", "ns", "gwir"); p != "" {
		t.Fatalf("a problem reported although endpoints were found: %s", p)
	}
}

func TestMergeChoosesThePort(t *testing.T) {
	ep := discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}}
	for _, tc := range []struct {
		name  string
		ports []discoveryv1.EndpointPort
		want  string
		port  string
	}{
		{"only port, no name asked", []discoveryv1.EndpointPort{port("gwir", 7000)}, "10.0.0.1:7000", ""},
		{"unnamed among named", []discoveryv1.EndpointPort{port("http", 80), port("", 7001)}, "10.0.0.1:7001", ""},
		{"by name", []discoveryv1.EndpointPort{port("http", 80), port("gwir", 7002)}, "10.0.0.1:7002", "gwir"},
		{"several named, none asked", []discoveryv1.EndpointPort{port("http", 80), port("gwir", 7002)}, "", ""},
		{"name absent", []discoveryv1.EndpointPort{port("http", 80)}, "", "gwir"},
		{"all ports (no number)", []discoveryv1.EndpointPort{{Name: ptr("gwir")}}, "", "gwir"},
		{"no ports at all", nil, "", ""},
	} {
		m := merge([]*discoveryv1.EndpointSlice{slice("s", discoveryv1.AddressTypeIPv4, tc.ports, ep)}, tc.port)
		got := ""
		for _, e := range m.set.State().Endpoints {
			got = e.Addr.String()
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		if p := m.problem("echo", "ns", tc.port); (tc.want == "") != (p != "") {
			t.Errorf("%s: problem %q", tc.name, p)
		} else if p != "" && !strings.Contains(p, "WithPort") {
			t.Errorf("%s: problem %q does not name the option", tc.name, p)
		}
	}
}

func TestMergeKeepsOneOfDuplicatesWhateverTheOrder(t *testing.T) {
	ports := []discoveryv1.EndpointPort{port("gwir", 7000)}
	draining := slice("a", discoveryv1.AddressTypeIPv4, ports,
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Conditions: conds(ptr(false), ptr(true), ptr(true))})
	ready := slice("b", discoveryv1.AddressTypeIPv4, ports, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Zone: ptr("z")})
	readyToo := slice("c", discoveryv1.AddressTypeIPv4, ports, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}})
	for _, order := range [][]*discoveryv1.EndpointSlice{{draining, ready, readyToo}, {readyToo, ready, draining}, {ready, draining, readyToo}} {
		eps := merge(order, "gwir").set.State().Endpoints
		if len(eps) != 1 || eps[0].Health != runtime.HealthServing || eps[0].Attributes[AttrSlice] != "b" {
			t.Fatalf("order %s,%s,%s: %+v; want the ready endpoint of slice b", order[0].Name, order[1].Name, order[2].Name, eps)
		}
	}
}

package authz

import (
	"net/netip"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// An allowed read: the lab's conditional deny is checked and passed over,
// then the mesh rule's prefixes decide.
func BenchmarkMatch(b *testing.B) {
	p := mustShop(b, 1)
	id := proto.MethodID("shop.Cart/Get")
	peer := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if allow, _, _ := p.Match(0, id, peer, nil, nil); !allow {
			b.Fatal("denied")
		}
	}
}

// A walk through every kind of condition: the lab prefixes, then the
// billing rule's caller and identity glob.
func BenchmarkMatchConditions(b *testing.B) {
	p := mustShop(b, 1)
	id := proto.MethodID("shop.Cart/PutMany")
	peer := netip.MustParseAddr("10.1.2.3")
	caller, identity := []byte("billing"), []byte("spiffe://shop.example/ns/prod/sa/billing")
	b.ReportAllocs()
	for b.Loop() {
		if allow, rule, _ := p.Match(0, id, peer, caller, identity); !allow || rule != 1 {
			b.Fatal("wrong decision")
		}
	}
}

func BenchmarkMatchDenied(b *testing.B) {
	p := mustShop(b, 1)
	id := proto.MethodID("shop.Cart/Put")
	peer := netip.MustParseAddr("10.9.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if allow, _, msg := p.Match(0, id, peer, nil, nil); allow || msg == "" {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkEngineMatch(b *testing.B) {
	e, _ := NewEngine(1, shopMethods)
	spec, _ := ParseFile("testdata/shop.yaml")
	if _, err := e.Load(spec); err != nil {
		b.Fatal(err)
	}
	id := proto.MethodID("shop.Cart/Get")
	peer := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		e.Match(0, id, peer, nil, nil)
	}
}

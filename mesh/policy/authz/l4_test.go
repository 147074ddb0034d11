package authz

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/bpf"
)

// lpm answers for addr what the XDP program would with only rules for
// port: the longest prefix containing it in the trie's space (where ::/0
// also holds IPv4), or allow when none does.
func lpm(rules []L4Rule, a netip.Addr) bpf.Action {
	u := toU(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	best, action := -1, bpf.Allow
	for _, r := range rules {
		ru := toU(r.Source)
		if ru.contains(u) && ru.p.Bits() > best {
			best, action = ru.p.Bits(), r.Action
		}
	}
	return action
}

// certainDeny is the oracle: does the policy deny addr for every known
// method, whatever caller and identity it presents?
func certainDeny(p *Policy, methods []string, a netip.Addr) bool {
	callers := [][]byte{nil, []byte("zz-other")}
	identities := [][]byte{nil, []byte("zz-other")}
	for _, r := range p.spec.Rules {
		for _, c := range r.Callers {
			callers = append(callers, []byte(c))
		}
		for _, id := range r.Identities {
			identities = append(identities, []byte(strings.ReplaceAll(id, "*", "x")))
		}
	}
	if len(methods) == 0 {
		methods = []string{"no.Such/Method"}
	}
	for _, m := range methods {
		for _, c := range callers {
			for _, id := range identities {
				if allow, _, _ := p.MatchName(0, m, a, c, id); allow {
					return false
				}
			}
		}
	}
	return true
}

func TestL4Example(t *testing.T) {
	spec, err := Parse("p.yaml", []byte(`rules:
  - name: ops-host
    action: allow
    sources: [10.9.0.5]
  - name: lab
    action: deny
    sources: [10.9.0.0/16]
  - name: billing-anywhere
    action: allow
    callers: [billing]
  - name: partner
    action: deny
    sources: [203.0.113.0/24]
  - name: partner-reads
    action: allow
    sources: [203.0.113.0/24]
    methods: ["Get*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(spec, shopMethods, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := p.L4(7000)
	pf := netip.MustParsePrefix
	// the lab is denied every method before any caller rule (entry, with
	// the ops host's hole in it); the partner is not, since billing may
	// call from anywhere, so the kernel leaves it to the matcher
	want := []L4Rule{
		{bpf.ACLRule{Source: pf("10.9.0.0/16"), Port: 7000, Action: bpf.Deny}, 1},
		{bpf.ACLRule{Source: pf("10.9.0.5/32"), Port: 7000, Action: bpf.Allow}, 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("L4 = %+v, want %+v", got, want)
	}
	// default deny: now everything not allowed for sure is dropped,
	// including both roots, with the allowed pieces reopened
	spec.Default = Deny
	spec.Rules = spec.Rules[:2]
	p, _ = Compile(spec, shopMethods, 1)
	got = p.L4(7000)
	want = []L4Rule{
		{bpf.ACLRule{Source: pf("::/0"), Port: 7000, Action: bpf.Deny}, -1},
		{bpf.ACLRule{Source: pf("10.9.0.5/32"), Port: 7000, Action: bpf.Allow}, 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("default deny: L4 = %+v, want %+v", got, want)
	}
	for _, a := range []string{"10.9.0.5", "10.9.0.6", "192.0.2.1", "2001:db8::1"} {
		if d := lpm(got, netip.MustParseAddr(a)) == bpf.Deny; d != certainDeny(p, shopMethods, netip.MustParseAddr(a)) {
			t.Errorf("%s: kernel drops %v, policy certainly denies %v", a, d, !d)
		}
	}
}

// Random policies over nested, disjoint and cross-family prefixes: the
// kernel never drops an address some call from it would be allowed from,
// and, for policies without caller or identity conditions, drops exactly
// the addresses the policy denies for sure. (With such conditions the
// compiler is conservative: a conditional deny above a conditional allow
// for the same callers leaves the address to the matcher.)
func TestL4AgreesWithMatch(t *testing.T) {
	exact, conservative := 0, 0
	pool := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.2.0.0/16",
		"192.168.0.0/16", "::/0", "::/8", "fd00::/8", "fd00:1::/32", "fd00:1:2::/48", "2001:db8::/32"}
	r := rand.New(rand.NewPCG(11, 12))
	pick := func(xs []string) []string {
		var out []string
		for _, x := range xs {
			if r.IntN(4) == 0 {
				out = append(out, x)
			}
		}
		return out
	}
	var probes []netip.Addr
	for _, s := range pool {
		pr := netip.MustParsePrefix(s)
		probes = append(probes, pr.Addr(), pr.Addr().Next())
	}
	for range 40 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		probes = append(probes, netip.AddrFrom16(b), netip.AddrFrom4([4]byte{10, 1, byte(r.Uint32()), byte(r.Uint32())}),
			netip.AddrFrom16([16]byte{0xfd, 0, 0, 1, 0, byte(r.Uint32()), 14: 1}))
	}
	for trial := range 300 {
		var spec Spec
		if r.IntN(2) == 0 {
			spec.Default = Deny
		}
		for i := range 1 + r.IntN(6) {
			rule := Rule{Name: fmt.Sprint("r", i), Action: Action(1 + r.IntN(2))}
			for _, s := range pick(pool) {
				rule.Sources = append(rule.Sources, netip.MustParsePrefix(s))
			}
			if trial%2 == 0 && r.IntN(4) == 0 {
				rule.Callers = pick([]string{"billing", "web"})
			}
			if trial%2 == 0 && r.IntN(4) == 0 {
				rule.Identities = pick([]string{"spiffe://a/*", "spiffe://b"})
			}
			if r.IntN(3) == 0 {
				rule.Services = pick([]string{"shop.*", "shop.Cart", "admin.Ops"})
			}
			if r.IntN(3) == 0 {
				rule.Methods = pick([]string{"Get*", "Put", "Drain"})
			}
			spec.Rules = append(spec.Rules, rule)
		}
		methods := shopMethods
		if trial%10 == 0 {
			methods = nil
		}
		p, err := Compile(spec, methods, 1)
		if err != nil {
			t.Fatal(err)
		}
		l4 := p.L4(9000)
		conditional := false
		for _, rule := range spec.Rules {
			conditional = conditional || len(rule.Callers) > 0 || len(rule.Identities) > 0
		}
		for _, a := range probes {
			kernel := lpm(l4, a) == bpf.Deny
			oracle := certainDeny(p, methods, a)
			switch {
			case kernel && !oracle:
				t.Fatalf("trial %d, %v: the kernel drops an address the policy allows some calls from\npolicy %+v\nL4 %+v", trial, a, spec, l4)
			case !kernel && oracle && !conditional:
				t.Fatalf("trial %d, %v: the kernel passes an address the policy denies every call from\npolicy %+v\nL4 %+v", trial, a, spec, l4)
			case kernel == oracle:
				exact++
			default:
				conservative++
			}
		}
	}
	t.Logf("%d probes decided as the policy would, %d left to the matcher though certainly denied", exact, conservative)
}

// fakeACL is the ACL part of bpf.Maps in memory.
type fakeACL struct {
	rules  map[[2]string]bpf.ACLRule
	writes int
	fail   error
}

func key(p netip.Prefix, port uint16) [2]string { return [2]string{p.String(), fmt.Sprint(port)} }

func (f *fakeACL) AddACLRule(r bpf.ACLRule) error {
	if f.fail != nil {
		return f.fail
	}
	f.writes++
	r.Hits = 0 // replacing resets the count, as in the kernel map
	f.rules[key(r.Source, r.Port)] = r
	return nil
}

func (f *fakeACL) RemoveACLRule(p netip.Prefix, port uint16) error {
	if _, ok := f.rules[key(p, port)]; !ok {
		return bpf.ErrNotFound
	}
	delete(f.rules, key(p, port))
	return nil
}

func (f *fakeACL) ACLRules() ([]bpf.ACLRule, error) {
	var out []bpf.ACLRule
	for _, r := range f.rules {
		out = append(out, r)
	}
	return out, nil
}

func TestSyncACL(t *testing.T) {
	pf := netip.MustParsePrefix
	other := bpf.ACLRule{Source: pf("192.0.2.0/24"), Port: 53, Action: bpf.Deny, Hits: 7}
	keepMe := bpf.ACLRule{Source: pf("10.9.0.0/16"), Port: 7000, Action: bpf.Deny, Hits: 42}
	stale := bpf.ACLRule{Source: pf("10.8.0.0/16"), Port: 7000, Action: bpf.Deny, Hits: 3}
	flip := bpf.ACLRule{Source: pf("10.7.0.0/16"), Port: 7000, Action: bpf.Allow, Hits: 5}
	f := &fakeACL{rules: map[[2]string]bpf.ACLRule{}}
	for _, r := range []bpf.ACLRule{other, keepMe, stale, flip} {
		f.rules[key(r.Source, r.Port)] = r
	}
	want := []L4Rule{
		{bpf.ACLRule{Source: pf("10.9.0.0/16"), Port: 7000, Action: bpf.Deny}, 0},
		{bpf.ACLRule{Source: pf("10.7.0.0/16"), Port: 7000, Action: bpf.Deny}, 1},
		{bpf.ACLRule{Source: pf("10.9.0.5/32"), Port: 7000, Action: bpf.Allow}, 2},
	}
	added, removed, err := SyncACL(f, 7000, want)
	if err != nil || added != 2 || removed != 1 {
		t.Fatalf("SyncACL = %d added, %d removed, %v; want 2, 1", added, removed, err)
	}
	if got := f.rules[key(other.Source, 53)]; got != other {
		t.Fatalf("another port's entry changed: %+v", got)
	}
	if got := f.rules[key(keepMe.Source, 7000)]; got.Hits != 42 {
		t.Fatalf("an unchanged entry was rewritten (hits %d)", got.Hits)
	}
	if _, ok := f.rules[key(stale.Source, 7000)]; ok {
		t.Fatal("a stale entry survived")
	}
	if got := f.rules[key(flip.Source, 7000)]; got.Action != bpf.Deny {
		t.Fatalf("a changed entry kept its action: %+v", got)
	}
	if added, removed, err := SyncACL(f, 7000, want); err != nil || added+removed != 0 {
		t.Fatalf("second sync: %d, %d, %v; want no change", added, removed, err)
	}
	if _, _, err := SyncACL(f, 7001, want); err == nil {
		t.Fatal("entries for another port accepted")
	}
	f.fail = bpf.ErrFull
	want[0].Action = bpf.Allow
	if _, _, err := SyncACL(f, 7000, want); !errors.Is(err, bpf.ErrFull) || !strings.Contains(err.Error(), "port 7000") {
		t.Fatalf("a failing map: %v", err)
	}

	// the kernel's counts, attributed to rules
	spec := Spec{Rules: []Rule{{Name: "lab", Action: Deny, Sources: []netip.Prefix{pf("10.9.0.0/16")}}}}
	p, _ := Compile(spec, shopMethods, 1)
	compiled := p.L4(7000)
	acl := []bpf.ACLRule{{Source: pf("10.9.0.0/16"), Port: 7000, Action: bpf.Deny, Hits: 9}, other}
	if h := p.L4Hits(acl, 7000, compiled); len(h) != 1 || h[0] != (RuleHits{Rule: 0, Name: "lab", Drops: 9}) {
		t.Fatalf("L4Hits = %+v", h)
	}
}

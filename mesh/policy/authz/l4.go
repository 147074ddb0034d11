package authz

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/zerohop/zerohop/bpf"
)

// L4Rule is one XDP ACL entry compiled from a policy, with the index of the
// policy rule that decided it (-1: the default) for attributing the
// kernel's hit counts.
type L4Rule struct {
	bpf.ACLRule
	PolicyRule int
}

// ACLMaps is the part of *bpf.Maps that SyncACL uses.
type ACLMaps interface {
	AddACLRule(bpf.ACLRule) error
	RemoveACLRule(source netip.Prefix, port uint16) error
	ACLRules() ([]bpf.ACLRule, error)
}

var _ ACLMaps = (*bpf.Maps)(nil)

// uprefix is a prefix in the XDP trie's one 128-bit space (IPv4 as
// v4-mapped IPv6), remembering its family, because in the rules an IPv6
// prefix never covers an IPv4 peer while in the trie ::/0 contains
// ::ffff:0:0/96.
type uprefix struct {
	p  netip.Prefix // always a 16-byte address
	v4 bool
}

func toU(p netip.Prefix) uprefix {
	p = unmapPrefix(p)
	if p.Addr().Is4() {
		return uprefix{netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96), true}
	}
	return uprefix{p, false}
}

func (u uprefix) contains(o uprefix) bool {
	return u.p.Bits() <= o.p.Bits() && u.p.Contains(o.p.Addr())
}

func (u uprefix) source() netip.Prefix {
	if u.v4 {
		return netip.PrefixFrom(u.p.Addr().Unmap(), u.p.Bits()-96)
	}
	return u.p
}

// L4 compiles the policy's source rules for destination port into XDP ACL
// entries (see the package doc): the returned Deny entries drop exactly
// the sources every known method would deny whatever their identity and
// caller, and Allow entries reopen the holes inside them. The result is
// sorted by prefix length and is empty when nothing can be decided in the
// kernel.
func (p *Policy) L4(port uint16) []L4Rule {
	v4root, v6root := toU(netip.MustParsePrefix("0.0.0.0/0")), toU(netip.MustParsePrefix("::/0"))
	set := map[uprefix]bool{v4root: true, v6root: true}
	for i := range p.rules {
		for _, s := range p.rules[i].sources {
			set[toU(s)] = true
		}
	}
	prefixes := make([]uprefix, 0, len(set))
	for u := range set {
		prefixes = append(prefixes, u)
	}
	slices.SortFunc(prefixes, func(a, b uprefix) int {
		if c := cmp.Compare(a.p.Bits(), b.p.Bits()); c != 0 {
			return c
		}
		return a.p.Addr().Compare(b.p.Addr())
	})
	// The methods whose decisions must all be deny: the known ones, or
	// with none known, the calls Match sends to the any-method rules.
	tables := make([]*table, 0, len(p.perMethod)+1)
	for i := range p.perMethod {
		tables = append(tables, &p.perMethod[i])
	}
	if len(tables) == 0 {
		tables = append(tables, &p.anyMethod)
	}
	type piece struct {
		action Action
		rule   int
	}
	decided := make(map[uprefix]piece, len(prefixes))
	var out []L4Rule
	for _, q := range prefixes {
		pc := piece{Deny, -1}
		for ti, t := range tables {
			a, r := p.pieceDecision(t, q)
			if ti == 0 {
				pc.rule = r
			}
			if a != Deny {
				pc = piece{Allow, r}
				break
			}
		}
		decided[q] = pc
		// the piece around q: the longest prefix strictly containing it,
		// in the trie's space; above ::/0 nothing, which allows
		parent := piece{Allow, -1}
		for i := len(prefixes) - 1; i >= 0; i-- {
			o := prefixes[i]
			if o.p.Bits() < q.p.Bits() && o.contains(q) {
				parent = decided[o]
				break
			}
		}
		if pc.action != parent.action {
			out = append(out, L4Rule{bpf.ACLRule{Source: q.source(), Port: port, Action: bpf.Action(pc.action)}, pc.rule})
		}
	}
	return out
}

// pieceDecision is the first-match decision for calls in t from the piece
// of q not covered by a longer prefix of the set, for every identity and
// caller: Deny only when certain; the deciding rule's index.
func (p *Policy) pieceDecision(t *table, q uprefix) (Action, int) {
	for _, ri := range t.cands {
		c := &p.rules[ri]
		if len(c.sources) > 0 {
			covers := false
			for _, s := range c.sources {
				if u := toU(s); u.v4 == q.v4 && u.contains(q) {
					covers = true
					break
				}
			}
			if !covers {
				continue // disjoint, or only a longer prefix inside q
			}
		}
		if len(c.identities) > 0 || len(c.callers) > 0 {
			if c.action == Allow {
				return Allow, int(ri) // some callers are allowed: not the kernel's call
			}
			continue // may or may not apply: the rules below decide the rest
		}
		return c.action, int(ri)
	}
	return p.spec.Default, -1
}

// SyncACL makes m's ACL entries for port equal want: entries that are
// missing or carry another action are written (new entries first, so a
// source is never left open by the update), then entries for port that
// want lacks are removed. Entries for other ports, and unchanged entries
// with their hit counts, are left alone.
func SyncACL(m ACLMaps, port uint16, want []L4Rule) (added, removed int, err error) {
	have, err := m.ACLRules()
	if err != nil {
		return 0, 0, fmt.Errorf("authz: syncing the XDP ACL for port %d: %w", port, err)
	}
	current := map[netip.Prefix]bpf.Action{}
	for _, r := range have {
		if r.Port == port {
			current[r.Source.Masked()] = r.Action
		}
	}
	keep := map[netip.Prefix]bool{}
	var errs []error
	for _, w := range want {
		if w.Port != port {
			return added, removed, fmt.Errorf("authz: syncing the XDP ACL for port %d: an entry for port %d", port, w.Port)
		}
		src := w.Source.Masked()
		keep[src] = true
		if a, ok := current[src]; ok && a == w.Action {
			continue
		}
		if err := m.AddACLRule(bpf.ACLRule{Source: src, Port: port, Action: w.Action}); err != nil {
			errs = append(errs, err)
			continue
		}
		added++
	}
	for src := range current {
		if keep[src] {
			continue
		}
		if err := m.RemoveACLRule(src, port); err != nil && !errors.Is(err, bpf.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return added, removed, fmt.Errorf("authz: syncing the XDP ACL for port %d: %w", port, err)
	}
	return added, removed, nil
}

// RuleHits is the kernel's drop count for one policy rule.
type RuleHits struct {
	Rule  int    // index in the Spec, -1 for the default
	Name  string // the rule's name, or "default"
	Drops uint64 // packets the XDP program dropped for it
}

// L4Hits attributes the hit counts of the Deny entries in acl (as returned
// by bpf.Maps.ACLRules) for port to the policy rules that produced them in
// compiled, one line per rule that has Deny entries.
func (p *Policy) L4Hits(acl []bpf.ACLRule, port uint16, compiled []L4Rule) []RuleHits {
	owner := map[netip.Prefix]int{}
	for _, c := range compiled {
		if c.Action == bpf.Deny {
			owner[c.Source.Masked()] = c.PolicyRule
		}
	}
	sum := map[int]uint64{}
	for _, a := range acl {
		if a.Port != port || a.Action != bpf.Deny {
			continue
		}
		if r, ok := owner[a.Source.Masked()]; ok {
			sum[r] += a.Hits
		}
	}
	var out []RuleHits
	for r, n := range sum {
		out = append(out, RuleHits{Rule: r, Name: p.RuleName(r), Drops: n})
	}
	slices.SortFunc(out, func(a, b RuleHits) int { return cmp.Compare(a.Rule, b.Rule) })
	return out
}

package identity

import (
	"fmt"
	"path"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Matcher decides which SPIFFE IDs a side accepts as peers. A pattern is
// a SPIFFE ID whose trust domain is literal and whose path segments are
// path.Match globs ('*' is any run of characters within one segment, '?'
// one character, [a-z] a class); a last segment "**" matches one or more
// segments. Examples:
//
//	spiffe://prod.example/ns/shop/sa/web     exactly that workload
//	spiffe://prod.example/ns/shop/sa/*       every service account of ns shop
//	spiffe://prod.example/**                 anything in the trust domain
//
// An ID matches when any pattern matches. The trust domain is never a
// glob: trusting another domain is a decision to spell out. The
// authorization policy (mesh/policy/authz) matches the same SPIFFE ID
// strings per method; this Matcher is the coarse gate at the handshake.
type Matcher struct {
	pats []idPattern
}

type idPattern struct {
	td      spiffeid.TrustDomain
	segs    []string
	rest    bool // last segment was "**"
	pattern string
}

// NewMatcher compiles patterns; an empty list matches nothing.
func NewMatcher(patterns ...string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		rest, ok := strings.CutPrefix(p, "spiffe://")
		if !ok {
			return nil, fmt.Errorf("identity: pattern %q: must start with spiffe://", p)
		}
		tdName, pth, _ := strings.Cut(rest, "/")
		td, err := spiffeid.TrustDomainFromString(tdName)
		if err != nil {
			return nil, fmt.Errorf("identity: pattern %q: trust domain: %w", p, err)
		}
		ip := idPattern{td: td, pattern: p}
		if pth != "" {
			ip.segs = strings.Split(pth, "/")
			for i, s := range ip.segs {
				if s == "" {
					return nil, fmt.Errorf("identity: pattern %q: empty path segment", p)
				}
				if s == "**" {
					if i != len(ip.segs)-1 {
						return nil, fmt.Errorf("identity: pattern %q: ** only as the last segment", p)
					}
					ip.rest, ip.segs = true, ip.segs[:i]
					break
				}
				if _, err := path.Match(s, ""); err != nil {
					return nil, fmt.Errorf("identity: pattern %q: segment %q: %w", p, s, err)
				}
			}
		}
		m.pats = append(m.pats, ip)
	}
	return m, nil
}

// MustMatcher is NewMatcher for patterns known to be valid (tests,
// constants); it panics on a bad one.
func MustMatcher(patterns ...string) *Matcher {
	m, err := NewMatcher(patterns...)
	if err != nil {
		panic(err)
	}
	return m
}

// AllowTrustDomain matches every workload of td.
func AllowTrustDomain(td spiffeid.TrustDomain) *Matcher {
	return &Matcher{pats: []idPattern{{td: td, rest: true, pattern: "spiffe://" + td.Name() + "/**"}}}
}

// Match reports whether id matches a pattern.
func (m *Matcher) Match(id spiffeid.ID) bool {
	if m == nil || id.IsZero() {
		return false
	}
	var segs []string
	if p := id.Path(); p != "" {
		segs = strings.Split(p[1:], "/")
	}
	for i := range m.pats {
		if m.pats[i].match(id.TrustDomain(), segs) {
			return true
		}
	}
	return false
}

func (p *idPattern) match(td spiffeid.TrustDomain, segs []string) bool {
	if td != p.td {
		return false
	}
	if len(segs) < len(p.segs) || !p.rest && len(segs) != len(p.segs) || p.rest && len(segs) == len(p.segs) {
		return false
	}
	for i, s := range p.segs {
		if ok, _ := path.Match(s, segs[i]); !ok {
			return false
		}
	}
	return true
}

// MatchString is Match on a SPIFFE ID in text; a malformed ID matches
// nothing.
func (m *Matcher) MatchString(id string) bool {
	sid, err := spiffeid.FromString(id)
	return err == nil && m.Match(sid)
}

// String lists the patterns.
func (m *Matcher) String() string {
	if m == nil {
		return "(none)"
	}
	s := make([]string, len(m.pats))
	for i, p := range m.pats {
		s[i] = p.pattern
	}
	return strings.Join(s, ", ")
}

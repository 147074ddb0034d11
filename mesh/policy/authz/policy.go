package authz

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/zerohop/zerohop/mesh/policy/internal/glob"
	"github.com/zerohop/zerohop/mesh/policy/internal/idtab"
	"github.com/zerohop/zerohop/proto"
)

// Action is what a rule does with the calls it matches.
type Action uint8

// Actions. The zero Action is not valid in a Rule; as a Spec's Default it
// means Allow.
const (
	Allow Action = 1
	Deny  Action = 2
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ParseAction parses "allow" or "deny" (any case).
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(s) {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("action %q: want allow or deny", s)
}

// Rule is one line of a policy: an action and the conditions a call must
// all meet for it to apply. An empty condition list places no condition.
type Rule struct {
	// Name labels the rule in counters and messages; empty means "rule N"
	// (N counted from 1).
	Name   string
	Action Action
	// Sources are prefixes of the peer address.
	Sources []netip.Prefix
	// Identities are globs over the peer's identity.
	Identities []string
	// Callers are exact CALLER tag values.
	Callers []string
	// Services are globs over the service part of the method name
	// ("shop.Cart"), Methods over the method part ("Get*").
	Services []string
	Methods  []string
	// Message is sent with DENIED; empty means a message naming the rule.
	Message string
	// Line is where the rule starts in its file (0 when not from a file).
	Line int
}

// Spec is a policy as written: its rules in order and a default action.
type Spec struct {
	Default Action // zero means Allow
	Rules   []Rule
}

// Report describes a compiled policy.
type Report struct {
	Rules   int
	Empty   bool // no rules: every call gets Default
	Default Action
	// Warnings name rules and globs that match no known method; such rules
	// still apply to methods registered later under MatchName.
	Warnings []string
}

func (r Report) String() string {
	var b strings.Builder
	if r.Empty {
		fmt.Fprintf(&b, "empty policy: no rules, every call gets the default action (%v)", r.Default)
	} else {
		fmt.Fprintf(&b, "%d rules, default %v", r.Rules, r.Default)
	}
	for _, w := range r.Warnings {
		b.WriteString("\nwarning: ")
		b.WriteString(w)
	}
	return b.String()
}

// Policy is a compiled Spec. Match and the counters are safe for
// concurrent use; the rest is immutable.
type Policy struct {
	spec        Spec
	rules       []compiled
	methodNames []string
	methods     *idtab.Table
	perMethod   []table
	anyMethod   table // for ids the table does not know
	defaultMsg  string
	report      Report

	loops  int
	stride int // counters per loop, a multiple of 8 so rows do not share lines
	hits   []atomic.Uint64
}

type compiled struct {
	name       string
	action     Action
	sources    []netip.Prefix
	identities []glob.Glob
	callers    []string
	services   []glob.Glob
	methods    []glob.Glob
	peerConds  bool // sources, identities or callers
	anyMethod  bool // no services and no methods
	msg        string
}

// table is the rules that can match one method, in order, ending at the
// first without peer conditions.
type table struct {
	cands []int32
	final bool // the last candidate has no peer conditions
}

// Compile compiles spec against the known methods (full names) for loops
// event loops. Errors name the rule (and its line, from a file).
func Compile(spec Spec, methods []string, loops int) (*Policy, error) {
	if loops < 1 {
		return nil, fmt.Errorf("authz: %d loops: give the number of event loops (≥ 1)", loops)
	}
	if spec.Default == 0 {
		spec.Default = Allow
	}
	if spec.Default != Allow && spec.Default != Deny {
		return nil, fmt.Errorf("authz: default action %v: want allow or deny", spec.Default)
	}
	ids := make([]uint32, len(methods))
	for i, m := range methods {
		if _, _, ok := splitMethod(m); !ok {
			return nil, fmt.Errorf("authz: known method %q: want \"pkg.Service/Method\"", m)
		}
		ids[i] = proto.MethodID(m)
	}
	tab, err := idtab.New(ids)
	if err != nil {
		return nil, fmt.Errorf("authz: known methods: %w", err)
	}
	p := &Policy{
		spec: spec, methodNames: methods, methods: tab, perMethod: make([]table, len(methods)),
		defaultMsg: "denied by the default policy: no rule allows this call",
		report:     Report{Rules: len(spec.Rules), Empty: len(spec.Rules) == 0, Default: spec.Default},
	}
	names := map[string]int{}
	for i, r := range spec.Rules {
		c, err := compileRule(i, r)
		if err != nil {
			return nil, err
		}
		if j, dup := names[c.name]; dup {
			return nil, fmt.Errorf("authz: %s: name %q is already used by rule %d%s", where(i, r), c.name, j+1, lineOf(spec.Rules[j]))
		}
		names[c.name] = i
		p.rules = append(p.rules, c)
	}
	for mi, m := range methods {
		svc, meth, _ := splitMethod(m)
		for ri := range p.rules {
			if p.rules[ri].matchesMethod(svc, meth) {
				p.perMethod[mi].add(int32(ri), &p.rules[ri])
			}
		}
	}
	for ri := range p.rules {
		if p.rules[ri].anyMethod {
			p.anyMethod.add(int32(ri), &p.rules[ri])
		}
	}
	p.report.Warnings = p.unmatched(methods)
	p.loops = loops
	p.stride = (len(p.rules) + 1 + 7) &^ 7
	p.hits = make([]atomic.Uint64, loops*p.stride+8) // +8: the last row's line is ours alone
	return p, nil
}

func (t *table) add(ri int32, r *compiled) {
	if t.final {
		return // unreachable behind a rule without peer conditions
	}
	t.cands = append(t.cands, ri)
	t.final = !r.peerConds
}

func where(i int, r Rule) string {
	name := r.Name
	if name == "" {
		name = fmt.Sprintf("rule %d", i+1)
	}
	return fmt.Sprintf("rule %d (%q)%s", i+1, name, lineOf(r))
}

func lineOf(r Rule) string {
	if r.Line > 0 {
		return fmt.Sprintf(" at line %d", r.Line)
	}
	return ""
}

func compileRule(i int, r Rule) (compiled, error) {
	fail := func(format string, args ...any) (compiled, error) {
		return compiled{}, fmt.Errorf("authz: %s: %s", where(i, r), fmt.Sprintf(format, args...))
	}
	c := compiled{name: r.Name, action: r.Action, callers: r.Callers}
	if c.name == "" {
		c.name = fmt.Sprintf("rule %d", i+1)
	}
	if r.Action != Allow && r.Action != Deny {
		return fail("action %v: want allow or deny", r.Action)
	}
	for _, s := range r.Sources {
		if !s.IsValid() {
			return fail("source %v is not a valid prefix", s)
		}
		c.sources = append(c.sources, unmapPrefix(s))
	}
	for _, caller := range r.Callers {
		if caller == "" || len(caller) > 255 {
			return fail("caller %q: want a service name of 1 to 255 bytes", caller)
		}
	}
	var err error
	if c.identities, err = compileGlobs(r.Identities); err != nil {
		return fail("identities: %v", err)
	}
	if c.services, err = compileGlobs(r.Services); err != nil {
		return fail("services: %v", err)
	}
	if c.methods, err = compileGlobs(r.Methods); err != nil {
		return fail("methods: %v", err)
	}
	for _, g := range c.services {
		if strings.Contains(g.String(), "/") {
			return fail("service %q contains '/': give the service part alone (\"pkg.Service\")", g)
		}
	}
	for _, g := range c.methods {
		if strings.Contains(g.String(), "/") {
			return fail("method %q contains '/': give the method part alone and the service under services", g)
		}
	}
	c.peerConds = len(c.sources) > 0 || len(c.identities) > 0 || len(c.callers) > 0
	c.anyMethod = allAny(c.services) && allAny(c.methods)
	switch {
	case r.Action == Allow:
	case r.Message != "":
		c.msg = r.Message
	default:
		c.msg = fmt.Sprintf("denied by rule %q", c.name)
	}
	return c, nil
}

func compileGlobs(patterns []string) ([]glob.Glob, error) {
	out := make([]glob.Glob, 0, len(patterns))
	for _, s := range patterns {
		g, err := glob.Compile(s)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// allAny: no globs, or one of them is "*".
func allAny(gs []glob.Glob) bool {
	if len(gs) == 0 {
		return true
	}
	for _, g := range gs {
		if g.Any() {
			return true
		}
	}
	return false
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p
}

func splitMethod(full string) (svc, meth string, ok bool) {
	i := strings.IndexByte(full, '/')
	if i <= 0 || i == len(full)-1 || strings.IndexByte(full[i+1:], '/') >= 0 {
		return "", "", false
	}
	return full[:i], full[i+1:], true
}

func anyMatch(gs []glob.Glob, s string) bool {
	if len(gs) == 0 {
		return true
	}
	for _, g := range gs {
		if g.Match(s) {
			return true
		}
	}
	return false
}

func (c *compiled) matchesMethod(svc, meth string) bool {
	return anyMatch(c.services, svc) && anyMatch(c.methods, meth)
}

// matchesPeer checks the peer conditions; peer must be unmapped.
func (c *compiled) matchesPeer(peer netip.Addr, caller, identity []byte) bool {
	if len(c.sources) > 0 {
		in := false
		for _, s := range c.sources {
			if s.Contains(peer) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if len(c.callers) > 0 {
		in := false
		for _, name := range c.callers {
			if string(caller) == name {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if len(c.identities) > 0 {
		if len(identity) == 0 {
			return false // an unauthenticated peer has no identity, not one "*" matches
		}
		in := false
		for _, g := range c.identities {
			if g.MatchBytes(identity) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// unmatched lists globs, and rules, that match no known method.
func (p *Policy) unmatched(methods []string) []string {
	var out []string
	for i, r := range p.spec.Rules {
		c := &p.rules[i]
		for _, g := range c.services {
			hit := false
			for _, m := range methods {
				svc, _, _ := splitMethod(m)
				if g.Match(svc) {
					hit = true
					break
				}
			}
			if !hit {
				out = append(out, fmt.Sprintf("%s: service %q matches no known service", where(i, r), g))
			}
		}
		for _, g := range c.methods {
			hit := false
			for _, m := range methods {
				svc, meth, _ := splitMethod(m)
				if anyMatch(c.services, svc) && g.Match(meth) {
					hit = true
					break
				}
			}
			if !hit {
				out = append(out, fmt.Sprintf("%s: method %q matches no known method of its services", where(i, r), g))
			}
		}
	}
	return out
}

// Report describes the policy: its size, default and load-time warnings.
func (p *Policy) Report() Report { return p.report }

// Spec returns the policy as written.
func (p *Policy) Spec() Spec { return p.spec }

// Match decides a call to method from peer with the given CALLER tag and
// identity (nil when absent), counting the decision on loop's counters.
// rule is the deciding rule's index in the Spec, or -1 for the default;
// message is set for denials. It does not allocate.
func (p *Policy) Match(loop int, method uint32, peer netip.Addr, caller, identity []byte) (allow bool, rule int, message string) {
	t := &p.anyMethod
	if mi, ok := p.methods.Get(method); ok {
		t = &p.perMethod[mi]
	}
	return p.decide(loop, t, peer.Unmap(), caller, identity)
}

// MatchName is Match for a method given by name; for a name the known
// methods do not include it evaluates every rule's globs on it.
func (p *Policy) MatchName(loop int, name string, peer netip.Addr, caller, identity []byte) (allow bool, rule int, message string) {
	if mi, ok := p.methods.Get(proto.MethodID(name)); ok && p.methodNames[mi] == name {
		return p.decide(loop, &p.perMethod[mi], peer.Unmap(), caller, identity)
	}
	svc, meth, _ := splitMethod(name)
	peer = peer.Unmap()
	for ri := range p.rules {
		c := &p.rules[ri]
		if c.matchesMethod(svc, meth) && (!c.peerConds || c.matchesPeer(peer, caller, identity)) {
			return p.result(loop, ri)
		}
	}
	return p.result(loop, -1)
}

func (p *Policy) decide(loop int, t *table, peer netip.Addr, caller, identity []byte) (bool, int, string) {
	for _, ri := range t.cands {
		c := &p.rules[ri]
		if !c.peerConds || c.matchesPeer(peer, caller, identity) {
			return p.result(loop, int(ri))
		}
	}
	return p.result(loop, -1)
}

func (p *Policy) result(loop, ri int) (bool, int, string) {
	if uint(loop) >= uint(p.loops) {
		loop = int(uint(loop) % uint(p.loops))
	}
	slot := len(p.rules) // the default's counter
	action, msg := p.spec.Default, p.defaultMsg
	if ri >= 0 {
		slot, action, msg = ri, p.rules[ri].action, p.rules[ri].msg
	}
	p.hits[loop*p.stride+slot].Add(1)
	if action == Allow {
		return true, ri, ""
	}
	return false, ri, msg
}

// Hits returns each rule's decisions since the policy was compiled, summed
// over loops, and the default's last.
func (p *Policy) Hits() []uint64 {
	out := make([]uint64, len(p.rules)+1)
	for l := range p.loops {
		for i := range out {
			out[i] += p.hits[l*p.stride+i].Load()
		}
	}
	return out
}

// RuleName returns rule i's name (as in counters), or "default" for -1.
func (p *Policy) RuleName(i int) string {
	if i < 0 || i >= len(p.rules) {
		return "default"
	}
	return p.rules[i].name
}

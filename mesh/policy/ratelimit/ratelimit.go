package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/internal/glob"
	"github.com/zerohop/zerohop/mesh/policy/internal/idtab"
	"github.com/zerohop/zerohop/proto"
)

// Rule limits the calls it matches. See the package doc for how rules are
// chosen and how the bucket behaves.
type Rule struct {
	// Name labels the rule in Stats and errors; empty means "rule N".
	Name string
	// Method is a glob over full method names ("shop.Cart/Get",
	// "shop.Cart/*"); empty or "*" covers every known method.
	Method string
	// Caller, when set, limits only calls whose CALLER tag equals it.
	Caller string
	// Source, when valid, limits only calls from addresses inside it.
	Source netip.Prefix
	// Rate is the sustained rate in calls per second (MinRate to 1e9).
	Rate float64
	// Burst is the bucket depth in calls (≥ 1): how many calls may arrive
	// at once after an idle period.
	Burst int
	// Shared gives all the methods the rule covers one bucket, instead of
	// one bucket each.
	Shared bool
	// Shadow counts the calls the rule would refuse but lets them through.
	Shadow bool
}

// Config describes a Limiter.
type Config struct {
	Rules []Rule
	// Methods are the full names of the methods the server serves; method
	// globs are resolved against them once, at New.
	Methods []string
	// Loops is the number of event loops that call Allow (≥ 1).
	Loops int
}

// MinRate is the slowest rate a Rule may have, one call in 1,000 s: the
// bucket's arithmetic (burst × ns per token) must stay far inside int64.
const MinRate = 0.001

// maxDepthNs bounds burst × ns per token (about 36 years), so that the
// bucket's times never overflow int64.
const maxDepthNs = 1 << 60

// Maximum lease a loop takes from a shared bucket at once.
const leaseMax = 256

// Limiter holds the buckets of a rule set. It is immutable once built
// (counters aside): to change rules, build a new Limiter.
type Limiter struct {
	loops     int
	buckets   []bucket
	pools     []pool
	methods   *idtab.Table
	perMethod [][]candidate
	shards    []*Loop
	warnings  []string
}

type bucket struct {
	rule     int
	name     string // rule name
	method   string // method name, "" for a Shared bucket
	interval int64  // ns per token
	depth    int64  // burst, in tokens
	lease    int64
	shadow   bool
}

// candidate is one rule's bucket for one method, with the rule's filters.
type candidate struct {
	bucket    int32
	hasCaller bool
	hasSource bool
	caller    string
	source    netip.Prefix
}

// pool is a bucket's shared GCRA word, alone on its cache line.
type pool struct {
	tat atomic.Int64
	_   [56]byte
}

// full is a tat that leaves every bucket full at any non-negative time.
const full = math.MinInt64 / 4

// New builds a Limiter. Errors name the rule and the field to fix.
func New(cfg Config) (*Limiter, error) {
	if cfg.Loops < 1 {
		return nil, fmt.Errorf("ratelimit: Config.Loops is %d: give the number of event loops (≥ 1)", cfg.Loops)
	}
	ids := make([]uint32, len(cfg.Methods))
	for i, name := range cfg.Methods {
		ids[i] = proto.MethodID(name)
	}
	tab, err := idtab.New(ids)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: Config.Methods: %w", err)
	}
	l := &Limiter{loops: cfg.Loops, methods: tab, perMethod: make([][]candidate, len(cfg.Methods))}
	for ri, r := range cfg.Rules {
		if err := l.addRule(ri, r, cfg.Methods); err != nil {
			return nil, err
		}
	}
	l.pools = make([]pool, len(l.buckets))
	for i := range l.pools {
		l.pools[i].tat.Store(full)
	}
	l.shards = make([]*Loop, cfg.Loops)
	for i := range l.shards {
		// Two spare slots at each end keep another loop's slots (or any
		// other small object) off the cache lines this loop writes.
		locals := make([]local, len(l.buckets)+4)
		l.shards[i] = &Loop{l: l, local: locals[2 : 2+len(l.buckets)]}
	}
	return l, nil
}

func (l *Limiter) addRule(ri int, r Rule, methods []string) error {
	name := r.Name
	if name == "" {
		name = fmt.Sprintf("rule %d", ri)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("ratelimit: rule %d (%q): %s", ri, name, fmt.Sprintf(format, args...))
	}
	if !(r.Rate >= MinRate) || r.Rate > 1e9 || math.IsInf(r.Rate, 0) {
		return fail("Rate %v: give calls per second, from %v to 1e9", r.Rate, MinRate)
	}
	if r.Burst < 1 {
		return fail("Burst %d: give at least 1 call", r.Burst)
	}
	pattern := r.Method
	if pattern == "" {
		pattern = "*"
	}
	g, err := glob.Compile(pattern)
	if err != nil {
		return fail("Method: %v", err)
	}
	c := candidate{bucket: -1, caller: r.Caller, hasCaller: r.Caller != ""}
	if r.Source.IsValid() {
		c.source, c.hasSource = unmapPrefix(r.Source), true
	} else if r.Source != (netip.Prefix{}) {
		return fail("Source %v is not a valid prefix", r.Source)
	}
	interval := int64(math.Round(1e9 / r.Rate))
	if interval < 1 {
		interval = 1
	}
	if int64(r.Burst) > maxDepthNs/interval {
		return fail("Burst %d at Rate %v: the bucket would hold more than %v of calls; lower the burst", r.Burst, r.Rate, time.Duration(maxDepthNs))
	}
	lease := int64(r.Burst) / int64(4*l.loops)
	lease = max(1, min(lease, leaseMax))
	newBucket := func(method string) int32 {
		l.buckets = append(l.buckets, bucket{rule: ri, name: name, method: method, interval: interval,
			depth: int64(r.Burst), lease: lease, shadow: r.Shadow})
		return int32(len(l.buckets) - 1)
	}
	matched := 0
	for mi, m := range methods {
		if !g.Match(m) {
			continue
		}
		matched++
		switch {
		case !r.Shared:
			c.bucket = newBucket(m)
		case c.bucket < 0:
			c.bucket = newBucket("")
		}
		l.perMethod[mi] = append(l.perMethod[mi], c)
	}
	if matched == 0 {
		l.warnings = append(l.warnings, fmt.Sprintf("ratelimit: rule %d (%q): method pattern %q matches no known method", ri, name, pattern))
	}
	return nil
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p
}

// Carry starts l's buckets where from's equal buckets are — same rule
// name, method, rate and burst — so a reload that keeps a limit hands out
// no fresh burst. Call it before l serves. Tokens that from's loops leased
// and did not spend are not carried (at most L·(k−1) fewer calls admitted
// once), and calls from admits between Carry and the moment l takes over
// are not charged to l (a reload is a few microseconds of them).
func (l *Limiter) Carry(from *Limiter) {
	if from == nil {
		return
	}
	type key struct {
		name, method    string
		interval, depth int64
	}
	old := make(map[key]int, len(from.buckets))
	for i, b := range from.buckets {
		old[key{b.name, b.method, b.interval, b.depth}] = i
	}
	for i, b := range l.buckets {
		if j, ok := old[key{b.name, b.method, b.interval, b.depth}]; ok {
			l.pools[i].tat.Store(from.pools[j].tat.Load())
		}
	}
}

// Warnings lists rules whose method pattern matched no known method (they
// limit nothing), one line each.
func (l *Limiter) Warnings() []string { return l.warnings }

// Loop returns the handle for event loop i (0 ≤ i < Config.Loops).
func (l *Limiter) Loop(i int) *Loop { return l.shards[i] }

// ErrNoLoop is returned by LoopChecked for an index outside 0..Loops-1.
var ErrNoLoop = errors.New("ratelimit: no such loop")

// LoopChecked is Loop with a range check.
func (l *Limiter) LoopChecked(i int) (*Loop, error) {
	if i < 0 || i >= len(l.shards) {
		return nil, fmt.Errorf("%w: %d of %d", ErrNoLoop, i, len(l.shards))
	}
	return l.shards[i], nil
}

// Loop is one event loop's view of a Limiter. Its Allow must be called from
// that loop's goroutine only; Stats may be read from anywhere.
type Loop struct {
	l     *Limiter
	local []local // per bucket
}

// local is a loop's state for one bucket. Only the owner writes it: tokens
// plainly (nobody else reads them), the counters with a plain read and an
// atomic store (an XCHG on amd64: a few nanoseconds on a line no other
// loop writes), read atomically by Stats.
type local struct {
	tokens                          int64 // leased, not yet spent
	allowed, limited, shadowLimited uint64
}

func bump(p *uint64) { atomic.StoreUint64(p, *p+1) }

// Allow decides a call to method from source with the given CALLER tag
// (nil when absent) at now (monotonic nanoseconds). When it refuses, retry
// is how long until the bucket refills one token (for RETRY_AFTER). It
// does not allocate.
func (p *Loop) Allow(now int64, method uint32, caller []byte, source netip.Addr) (allowed bool, retry time.Duration) {
	mi, ok := p.l.methods.Get(method)
	if !ok {
		return true, 0
	}
	cands := p.l.perMethod[mi]
	if len(cands) == 0 {
		return true, 0
	}
	source = source.Unmap()
	for i := range cands {
		c := &cands[i]
		if c.hasCaller && string(caller) != c.caller {
			continue
		}
		if c.hasSource && !c.source.Contains(source) {
			continue
		}
		return p.take(now, int(c.bucket))
	}
	return true, 0
}

func (p *Loop) take(now int64, b int) (bool, time.Duration) {
	st := &p.local[b]
	if st.tokens > 0 {
		st.tokens--
		bump(&st.allowed)
		return true, 0
	}
	bk := &p.l.buckets[b]
	got, wait := p.l.pools[b].lease(now, bk)
	if got > 0 {
		st.tokens = got - 1
		bump(&st.allowed)
		return true, 0
	}
	if bk.shadow {
		bump(&st.shadowLimited)
		return true, 0
	}
	bump(&st.limited)
	return false, wait
}

// lease takes up to bk.lease tokens; with none available it returns how
// long until one is.
func (p *pool) lease(now int64, bk *bucket) (int64, time.Duration) {
	for {
		old := p.tat.Load()
		base := max(old, now-bk.depth*bk.interval)
		avail := (now - base) / bk.interval
		if avail <= 0 {
			return 0, time.Duration(base + bk.interval - now)
		}
		n := min(avail, bk.lease)
		if p.tat.CompareAndSwap(old, base+n*bk.interval) {
			return n, 0
		}
	}
}

// Stat is one bucket's counters summed over loops.
type Stat struct {
	Rule   string // the rule's name
	Method string // the method, or "" for a Shared rule's bucket
	// Allowed calls took a token; Limited were refused; ShadowLimited found
	// a Shadow rule's bucket empty and went through.
	Allowed, Limited, ShadowLimited uint64
}

// Stats returns every bucket's counters, in rule order. Under traffic the
// counters of different loops are read at slightly different moments.
func (l *Limiter) Stats() []Stat {
	out := make([]Stat, len(l.buckets))
	for b, bk := range l.buckets {
		s := Stat{Rule: bk.name, Method: bk.method}
		for _, p := range l.shards {
			c := &p.local[b]
			s.Allowed += atomic.LoadUint64(&c.allowed)
			s.Limited += atomic.LoadUint64(&c.limited)
			s.ShadowLimited += atomic.LoadUint64(&c.shadowLimited)
		}
		out[b] = s
	}
	return out
}

// LeaseSize returns k, the tokens a loop leases at once from the bucket of
// the rule-th rule (for the error bound in the package doc), or 0 when the
// rule has no bucket.
func (l *Limiter) LeaseSize(rule int) int {
	for _, bk := range l.buckets {
		if bk.rule == rule {
			return int(bk.lease)
		}
	}
	return 0
}

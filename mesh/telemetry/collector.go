package telemetry

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/proto"
)

// Sources names what a Collector (and an Admin) reads. Every field is
// optional; the metrics of a source that is nil are not registered at
// all, so a process without a client exports no zerohop_client_* series.
type Sources struct {
	Server ServerSource
	// XDP reads the interface's steering program; Iface labels its
	// metrics. Admin opens the maps itself (bpf.OpenAttached) when XDP is
	// nil and Iface is set.
	XDP   XDPSource
	Iface string
	// Client is the process's client engine.
	Client ClientSource
	// Tracer adds the tracer's own counters.
	Tracer *Tracer
	// Sessions is the sealed-frame session table of a server or client
	// with a sealer (mesh/identity); with Server, its loops' sealed and
	// unsealed request counts are exported too.
	Sessions SessionSource
}

// Collector is a prometheus.Collector over Sources: it keeps no counters
// of its own and reads the sources' counters when scraped, so the request
// path counts each event exactly once, in the runtime. Register it once
// per server (a second server in the same registry needs
// prometheus.WrapRegistererWith and a label of its own).
type Collector struct {
	src Sources
}

// NewCollector returns a Collector over src.
func NewCollector(src Sources) *Collector { return &Collector{src: src} }

func (c *Collector) defs() []*metricDef {
	var out []*metricDef
	if c.src.Server != nil {
		out = append(out, serverMetrics...)
	}
	if c.src.XDP != nil {
		out = append(out, xdpMetrics...)
	}
	if c.src.Client != nil {
		out = append(out, clientMetrics...)
		cov := c.src.Client.ClientCoverage()
		for _, g := range []struct {
			on   bool
			defs []*metricDef
		}{{cov.Methods, clientMethodMetrics}, {cov.State, clientStateMetrics}, {cov.Breaker, clientBreakerMetrics},
			{cov.Transport, clientTransportMetrics}} {
			if g.on {
				out = append(out, g.defs...)
			}
		}
	}
	if c.src.Tracer != nil {
		out = append(out, traceMetrics...)
	}
	if c.src.Sessions != nil {
		out = append(out, sessionMetrics...)
		if c.src.Server != nil {
			out = append(out, sealServerMetric...)
		}
	}
	return out
}

// Describe sends the descriptors of the metrics of the sources given.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.defs() {
		ch <- d.desc
	}
}

// Collect reads every source once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Server != nil {
		collectServer(ch, c.src.Server)
	}
	if c.src.XDP != nil {
		collectXDP(ch, c.src.XDP, c.src.Iface)
	}
	if c.src.Client != nil {
		collectClient(ch, c.src.Client.ClientStats(), c.src.Client.ClientCoverage())
	}
	if t := c.src.Tracer; t != nil {
		st := t.Stats()
		counter(ch, mTraceSampled, st.SampledLoop, "loop")
		counter(ch, mTraceSampled, st.SampledBlocking, "blocking")
		counter(ch, mTraceDropped, st.Dropped)
	}
	if c.src.Sessions != nil {
		collectSessions(ch, c.src.Sessions, c.src.Server)
	}
}

func counter(ch chan<- prometheus.Metric, d *metricDef, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *metricDef, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, v, labels...)
}

// histogram turns a runtime histogram into a Prometheus one with
// DurationBuckets. The runtime's buckets are 12.5 % wide and CountBelow
// never overstates, so a Prometheus bucket counts exactly the values below
// the runtime boundary at or under its bound: values within 12.5 % under
// a bound may land in the next bucket, never in an earlier one.
func histogram(ch chan<- prometheus.Metric, d *metricDef, h Distribution, labels ...string) {
	buckets := make(map[float64]uint64, len(DurationBuckets))
	for _, b := range DurationBuckets {
		buckets[b] = h.CountBelow(time.Duration(b * float64(time.Second)))
	}
	ch <- prometheus.MustNewConstHistogram(d.desc, h.Count(), h.Sum().Seconds(), buckets, labels...)
}

func collectServer(ch chan<- prometheus.Metric, s ServerSource) {
	st := s.Stats()
	gauge(ch, mServerInfo, 1, s.Addr().String(), s.Backend().String())
	draining := 0.0
	if s.Draining() {
		draining = 1
	}
	gauge(ch, mServerDraining, draining)
	counter(ch, mServerAbandoned, st.Abandoned)
	for i := range st.Methods {
		m := &st.Methods[i]
		for status, n := range m.Statuses {
			counter(ch, mServerRequests, n, m.Method, status.String())
		}
		if len(m.Statuses) == 0 {
			// A method nobody called yet still has a series, so rate()
			// and absent() work from the first scrape.
			counter(ch, mServerRequests, 0, m.Method, proto.StatusOK.String())
		}
		counter(ch, mRateLimited, m.Statuses[proto.StatusRateLimited], m.Method)
		histogram(ch, mServerDuration, &m.Latency, m.Method)
	}
	for i := range st.Loops {
		l := &st.Loops[i]
		q := strconv.Itoa(l.Queue)
		gauge(ch, mLoopInfo, 1, q, joinInts(l.Queues), strconv.Itoa(l.Core))
		counter(ch, mLoopRX, l.RX, q)
		counter(ch, mLoopTX, l.TX, q)
		for _, path := range sortedKeys(l.Served) {
			counter(ch, mLoopRequests, l.Served[path], q, path)
		}
		counter(ch, mLoopPings, l.Pings, q)
		counter(ch, mLoopOneway, l.Oneway, q)
		counter(ch, mLoopBlocking, l.Blocking, q)
		for _, e := range []struct {
			s proto.Status
			n uint64
		}{{proto.StatusBadFrame, l.BadFrame}, {proto.StatusUnknownMethod, l.UnknownMethod}, {proto.StatusInternal, l.Panics},
			{proto.StatusOverloaded, l.Overloaded}, {proto.StatusTooLarge, l.TooLarge}, {proto.StatusDeadlineExceeded, l.Expired}} {
			counter(ch, mLoopErrors, e.n, q, e.s.String())
		}
		counter(ch, mLoopKicks, l.Kicks, q)
		counter(ch, mLoopRearms, l.Rearms, q)
		counter(ch, mLoopFillEmpty, l.FillRingEmpty, q)
		counter(ch, mLoopPartialSum, l.PartialChecksum, q)
		for _, op := range sortedKeys(l.OpErrors) {
			counter(ch, mLoopOpErrors, l.OpErrors[op], q, op)
		}
		histogram(ch, mLoopDuration, &l.Latency, q)
	}
	for _, path := range sortedKeys(st.Total.DroppedByPath) {
		byReason := st.Total.DroppedByPath[path]
		for _, reason := range sortedKeys(byReason) {
			counter(ch, mDrops, byReason[reason], reason, path)
		}
	}
}

func collectXDP(ch chan<- prometheus.Metric, x XDPSource, iface string) {
	c, err := x.Counters()
	if err != nil {
		gauge(ch, mXDPUp, 0, iface)
		return
	}
	gauge(ch, mXDPUp, 1, iface)
	counter(ch, mXDPPackets, c.Redirected, iface, "redirect")
	counter(ch, mXDPPackets, c.Passed, iface, "pass")
	counter(ch, mXDPPackets, c.ACLDropped, iface, "acl_drop")
	counter(ch, mXDPPackets, c.LossDropped, iface, "loss_drop")
	counter(ch, mXDPPackets, c.UnsealedDropped, iface, "unsealed_drop")
	counter(ch, mXDPPassed, c.Malformed, iface, "malformed")
	counter(ch, mXDPPassed, c.NoSocket, iface, "no_socket")
	counter(ch, mXDPPassed, c.Stale, iface, "stale")
	counter(ch, mXDPPassed, c.Fragment, iface, "fragment")
	counter(ch, mXDPPassed, c.Oversize, iface, "oversize")
	if rules, err := x.ACLRules(); err == nil {
		for _, r := range rules {
			counter(ch, mACLHits, r.Hits, iface, r.Source.String(), aclPort(r.Port), r.Action.String())
		}
	}
	if slots, err := x.Slots(); err == nil {
		var live, stale float64
		for _, s := range slots {
			if s.Stale {
				stale++
			} else {
				live++
			}
		}
		gauge(ch, mXDPServers, live, iface, "live")
		gauge(ch, mXDPServers, stale, iface, "stale")
	}
	if svcs, err := x.Services(); err == nil {
		var live, stale float64
		for _, s := range svcs {
			if s.Stale {
				stale++
			} else {
				live++
			}
		}
		gauge(ch, mXDPSvc, live, iface, "live")
		gauge(ch, mXDPSvc, stale, iface, "stale")
	}
}

func aclPort(p uint16) string {
	if p == 0 {
		return "any"
	}
	return strconv.Itoa(int(p))
}

func collectClient(ch chan<- prometheus.Metric, st ClientStats, cov ClientCoverage) {
	if cov.Methods {
		for i := range st.Methods {
			m := &st.Methods[i]
			for status, n := range m.Statuses {
				counter(ch, mClientRequests, n, m.Service, m.Method, status.String())
			}
			for reason, n := range m.Failures {
				counter(ch, mClientRequests, n, m.Service, m.Method, reason)
			}
			counter(ch, mClientAttempts, m.Attempts, m.Service, m.Method)
			if m.Latency != nil {
				histogram(ch, mClientDuration, m.Latency, m.Service, m.Method)
			}
		}
	}
	type svcState struct {
		svc   string
		state EndpointState
	}
	counts := map[svcState]int{}
	var services []string
	for i := range st.Endpoints {
		e := &st.Endpoints[i]
		if _, seen := counts[svcState{e.Service, ""}]; !seen {
			counts[svcState{e.Service, ""}] = 0
			services = append(services, e.Service)
		}
		counts[svcState{e.Service, e.State}]++
		ep := e.Addr.String()
		gauge(ch, mEndpointFlight, float64(e.InFlight), e.Service, ep)
		if cov.Breaker {
			gauge(ch, mBreakerState, e.BreakerDrop, e.Service, ep)
		}
		if cov.Transport {
			tr := &e.Transport
			counter(ch, mEndpointRequests, tr.Requests, e.Service, ep)
			counter(ch, mEndpointRetransmits, tr.Retransmits, e.Service, ep)
			counter(ch, mEndpointReplies, tr.Replies, e.Service, ep)
			counter(ch, mEndpointTimeouts, tr.Timeouts, e.Service, ep)
			counter(ch, mEndpointSocketErrs, tr.SocketErrs, e.Service, ep)
			counter(ch, mEndpointBadReplies, tr.Duplicates, e.Service, ep, "duplicate")
			counter(ch, mEndpointBadReplies, tr.Malformed, e.Service, ep, "malformed")
			counter(ch, mEndpointBadReplies, tr.TooLarge, e.Service, ep, "too_large")
			if tr.SRTT > 0 {
				gauge(ch, mEndpointSRTT, tr.SRTT.Seconds(), e.Service, ep)
			}
		}
	}
	if cov.State {
		for _, svc := range services {
			for _, state := range []EndpointState{EndpointServing, EndpointDraining, EndpointEjected, EndpointUnhealthy} {
				gauge(ch, mEndpoints, float64(counts[svcState{svc, state}]), svc, string(state))
			}
		}
	}
}

// Compile-time check that bpf.Maps is an XDPSource.
var _ XDPSource = (*bpf.Maps)(nil)

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

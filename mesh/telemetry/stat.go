package telemetry

import (
	"sort"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/runtime"
)

// StatReport is everything `zerohop stat` and `zerohop top` show, as the
// admin endpoint's /stat serves it (JSON). Sections whose source is absent
// are omitted. Counters are cumulative (since Start, or since a method was
// registered); tools compute rates from two reports and their Time.
type StatReport struct {
	Time    time.Time     `json:"time"`
	Server  *ServerReport `json:"server,omitempty"`
	XDP     *XDPReport    `json:"xdp,omitempty"`
	Client  *ClientReport `json:"client,omitempty"`
	Tracing *TracerStats  `json:"tracing,omitempty"`
	// Sessions is present when the server (or client) seals its frames.
	Sessions *SessionsReport `json:"sessions,omitempty"`
}

// ServerReport is runtime.Stats in JSON form.
type ServerReport struct {
	Addr      string         `json:"addr"`
	Backend   string         `json:"backend"`
	Draining  bool           `json:"draining"`
	Abandoned uint64         `json:"abandoned"`
	Loops     []LoopReport   `json:"loops"`
	Total     LoopReport     `json:"total"`
	Methods   []MethodReport `json:"methods"`
}

// LoopReport is one event loop's counters (runtime.LoopStats).
type LoopReport struct {
	Queue           int                          `json:"queue"`
	Queues          []int                        `json:"queues"`
	Core            int                          `json:"core"`
	RX              uint64                       `json:"rx"`
	TX              uint64                       `json:"tx"`
	Requests        uint64                       `json:"requests"`
	Pings           uint64                       `json:"pings"`
	Oneway          uint64                       `json:"oneway"`
	Served          map[string]uint64            `json:"served"`
	BadFrame        uint64                       `json:"bad_frame"`
	UnknownMethod   uint64                       `json:"unknown_method"`
	Panics          uint64                       `json:"panics"`
	Overloaded      uint64                       `json:"overloaded"`
	TooLarge        uint64                       `json:"too_large"`
	Blocking        uint64                       `json:"blocking"`
	Expired         uint64                       `json:"expired"`
	Kicks           uint64                       `json:"kicks"`
	FillRingEmpty   uint64                       `json:"fill_ring_empty"`
	Rearms          uint64                       `json:"rearms"`
	PartialChecksum uint64                       `json:"partial_checksum"`
	Sealed          uint64                       `json:"sealed"`
	Unsealed        uint64                       `json:"unsealed"`
	UnsealedDenied  uint64                       `json:"unsealed_denied"`
	Dropped         map[string]uint64            `json:"dropped"`
	DroppedByPath   map[string]map[string]uint64 `json:"dropped_by_path"`
	OpErrors        map[string]uint64            `json:"op_errors"`
	Latency         LatencyReport                `json:"latency"`
}

// MethodReport is one method's counters (runtime.MethodStats), statuses
// by name.
type MethodReport struct {
	Method   string            `json:"method"`
	Blocking bool              `json:"blocking"`
	Requests uint64            `json:"requests"`
	Statuses map[string]uint64 `json:"statuses"`
	Latency  LatencyReport     `json:"latency"`
}

// LatencyReport summarises a latency histogram. Buckets lists the
// non-empty buckets of the runtime's histogram as [lower bound ns, count]
// pairs, so a tool holding two reports can compute quantiles over the
// interval between them (Interval).
type LatencyReport struct {
	Count   uint64      `json:"count"`
	SumNs   uint64      `json:"sum_ns"`
	P50Ns   int64       `json:"p50_ns"`
	P99Ns   int64       `json:"p99_ns"`
	P999Ns  int64       `json:"p999_ns"`
	Buckets [][2]uint64 `json:"buckets,omitempty"`
}

// XDPReport is the interface's steering program: counters summed over
// CPUs and every server of the interface, services, servers and ACL.
type XDPReport struct {
	Iface    string          `json:"iface"`
	Error    string          `json:"error,omitempty"`
	Counters bpf.Counters    `json:"counters"`
	Services []ServiceReport `json:"services"`
	Slots    []bpf.SlotInfo  `json:"slots"`
	ACL      []ACLReport     `json:"acl"`
}

// ServiceReport is one steered service.
type ServiceReport struct {
	Port  uint16 `json:"port"`
	Addr  string `json:"addr"` // "any" for the port's any-address service
	ID    uint32 `json:"id"`
	Slot  int    `json:"slot"`
	PID   uint32 `json:"pid"`
	Stale bool   `json:"stale"`
}

// ACLReport is one ACL rule and its hits.
type ACLReport struct {
	Source string `json:"source"`
	Port   uint16 `json:"port"`
	Action string `json:"action"`
	Hits   uint64 `json:"hits"`
}

// ClientReport is the client side (ClientStats), statuses by name.
// Coverage says which fields the source filled in: the others are zero
// and mean nothing.
type ClientReport struct {
	Coverage  ClientCoverage       `json:"coverage"`
	Methods   []ClientMethodReport `json:"methods"`
	Endpoints []EndpointReport     `json:"endpoints"`
}

// ClientMethodReport is ClientMethodStats in JSON form.
type ClientMethodReport struct {
	Service  string            `json:"service"`
	Method   string            `json:"method"`
	Statuses map[string]uint64 `json:"statuses"`
	Failures map[string]uint64 `json:"failures"`
	Attempts uint64            `json:"attempts"`
	Latency  *LatencyReport    `json:"latency,omitempty"`
}

// EndpointReport is EndpointStats in JSON form.
type EndpointReport struct {
	Service     string  `json:"service"`
	Addr        string  `json:"addr"`
	State       string  `json:"state"`
	BreakerDrop float64 `json:"breaker_drop"`
	InFlight    int     `json:"inflight"`
	// The engine's counters of the endpoint (Coverage.Transport).
	Requests    uint64 `json:"requests"`
	Retransmits uint64 `json:"retransmits"`
	Replies     uint64 `json:"replies"`
	Timeouts    uint64 `json:"timeouts"`
	SocketErrs  uint64 `json:"socket_errors"`
	SRTTNs      int64  `json:"srtt_ns"`
}

// Snapshot reads every source of src once.
func Snapshot(src Sources) StatReport {
	rep := StatReport{Time: time.Now()}
	if s := src.Server; s != nil {
		rep.Server = serverReport(s)
	}
	if src.XDP != nil {
		rep.XDP = xdpReport(src.XDP, src.Iface)
	}
	if src.Client != nil {
		rep.Client = clientReport(src.Client.ClientStats(), src.Client.ClientCoverage())
	}
	if src.Tracer != nil {
		st := src.Tracer.Stats()
		rep.Tracing = &st
	}
	if src.Sessions != nil {
		rep.Sessions = sessionsReport(src.Sessions, rep.Time)
	}
	return rep
}

func serverReport(s ServerSource) *ServerReport {
	st := s.Stats()
	r := &ServerReport{Addr: s.Addr().String(), Backend: st.Backend.String(), Draining: s.Draining(),
		Abandoned: st.Abandoned, Total: loopReport(&st.Total), Loops: []LoopReport{}, Methods: []MethodReport{}}
	for i := range st.Loops {
		r.Loops = append(r.Loops, loopReport(&st.Loops[i]))
	}
	for i := range st.Methods {
		m := &st.Methods[i]
		mr := MethodReport{Method: m.Method, Blocking: m.Blocking, Requests: m.Requests,
			Statuses: map[string]uint64{}, Latency: latencyReport(&m.Latency)}
		for status, n := range m.Statuses {
			mr.Statuses[status.String()] = n
		}
		r.Methods = append(r.Methods, mr)
	}
	return r
}

func loopReport(l *runtime.LoopStats) LoopReport {
	return LoopReport{Queue: l.Queue, Queues: l.Queues, Core: l.Core, RX: l.RX, TX: l.TX, Requests: l.Requests,
		Pings: l.Pings, Oneway: l.Oneway, Served: l.Served, BadFrame: l.BadFrame, UnknownMethod: l.UnknownMethod,
		Panics: l.Panics, Overloaded: l.Overloaded, TooLarge: l.TooLarge, Blocking: l.Blocking, Expired: l.Expired,
		Kicks: l.Kicks, FillRingEmpty: l.FillRingEmpty, Rearms: l.Rearms, PartialChecksum: l.PartialChecksum,
		Sealed: l.Sealed, Unsealed: l.Unsealed, UnsealedDenied: l.UnsealedDenied,
		Dropped: l.Dropped, DroppedByPath: l.DroppedByPath, OpErrors: l.OpErrors, Latency: latencyReport(&l.Latency)}
}

// The runtime's histogram layout (runtime/internal/engine/histogram.go):
// each power of two of nanoseconds split into 8 linear sub-buckets. The
// bounds below are exact for that layout, where CountBelow is exact; were
// the layout to change they would still never overstate a bucket.
const (
	histSubBits = 3
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits) * histSub
)

func histBucketLow(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	exp := b/histSub + histSubBits - 1
	sub := uint64(b % histSub)
	return (1 << uint(exp)) | sub<<(uint(exp)-histSubBits)
}

func latencyReport(h Distribution) LatencyReport {
	r := LatencyReport{Count: h.Count(), SumNs: uint64(h.Sum()), P50Ns: int64(h.Quantile(0.5)),
		P99Ns: int64(h.Quantile(0.99)), P999Ns: int64(h.Quantile(0.999))}
	var below uint64 // values below histBucketLow(b)
	for b := 0; b+1 < histBuckets && below < r.Count; b++ {
		next := h.CountBelow(time.Duration(histBucketLow(b + 1)))
		if n := next - below; n > 0 {
			r.Buckets = append(r.Buckets, [2]uint64{histBucketLow(b), n})
		}
		below = next
	}
	if below < r.Count { // the last bucket, up to ~68 s and beyond
		r.Buckets = append(r.Buckets, [2]uint64{histBucketLow(histBuckets - 1), r.Count - below})
	}
	return r
}

// Interval returns the latency of the values recorded between prev and
// cur (two reports of the same histogram): their count and quantiles,
// each the lower bound of the runtime bucket it falls in, within 12.5 %.
func Interval(prev, cur *LatencyReport) (count uint64, quantile func(q float64) time.Duration) {
	before := map[uint64]uint64{}
	for _, b := range prev.Buckets {
		before[b[0]] = b[1]
	}
	var diff [][2]uint64
	for _, b := range cur.Buckets {
		if n := b[1] - min(before[b[0]], b[1]); n > 0 {
			diff = append(diff, [2]uint64{b[0], n})
			count += n
		}
	}
	sort.Slice(diff, func(i, j int) bool { return diff[i][0] < diff[j][0] })
	return count, func(q float64) time.Duration {
		if count == 0 {
			return 0
		}
		q = min(max(q, 0), 1)
		rank := uint64(q*float64(count-1)) + 1
		var seen uint64
		for _, b := range diff {
			seen += b[1]
			if seen >= rank {
				return time.Duration(b[0])
			}
		}
		return time.Duration(diff[len(diff)-1][0])
	}
}

func xdpReport(x XDPSource, iface string) *XDPReport {
	r := &XDPReport{Iface: iface, Services: []ServiceReport{}, Slots: []bpf.SlotInfo{}, ACL: []ACLReport{}}
	var err error
	if r.Counters, err = x.Counters(); err != nil {
		r.Error = err.Error()
		return r
	}
	if svcs, err := x.Services(); err == nil {
		for _, s := range svcs {
			addr := "any"
			if s.Addr.IsValid() {
				addr = s.Addr.String()
			}
			r.Services = append(r.Services, ServiceReport{Port: s.Port, Addr: addr, ID: s.ID, Slot: s.Slot, PID: s.PID, Stale: s.Stale})
		}
	} else {
		r.Error = err.Error()
	}
	if slots, err := x.Slots(); err == nil {
		r.Slots = slots
	} else {
		r.Error = err.Error()
	}
	if rules, err := x.ACLRules(); err == nil {
		for _, a := range rules {
			r.ACL = append(r.ACL, ACLReport{Source: a.Source.String(), Port: a.Port, Action: a.Action.String(), Hits: a.Hits})
		}
	} else {
		r.Error = err.Error()
	}
	sort.Slice(r.Services, func(i, j int) bool {
		if r.Services[i].Port != r.Services[j].Port {
			return r.Services[i].Port < r.Services[j].Port
		}
		return r.Services[i].Addr < r.Services[j].Addr
	})
	sort.Slice(r.Slots, func(i, j int) bool { return r.Slots[i].Slot < r.Slots[j].Slot })
	sort.Slice(r.ACL, func(i, j int) bool {
		if r.ACL[i].Source != r.ACL[j].Source {
			return r.ACL[i].Source < r.ACL[j].Source
		}
		return r.ACL[i].Port < r.ACL[j].Port
	})
	return r
}

func clientReport(st ClientStats, cov ClientCoverage) *ClientReport {
	r := &ClientReport{Coverage: cov, Methods: []ClientMethodReport{}, Endpoints: []EndpointReport{}}
	for _, m := range st.Methods {
		mr := ClientMethodReport{Service: m.Service, Method: m.Method, Statuses: map[string]uint64{},
			Failures: map[string]uint64{}, Attempts: m.Attempts}
		for s, n := range m.Statuses {
			mr.Statuses[s.String()] = n
		}
		for k, n := range m.Failures {
			mr.Failures[k] = n
		}
		if m.Latency != nil {
			l := latencyReport(m.Latency)
			mr.Latency = &l
		}
		r.Methods = append(r.Methods, mr)
	}
	for _, e := range st.Endpoints {
		tr := &e.Transport
		r.Endpoints = append(r.Endpoints, EndpointReport{Service: e.Service, Addr: e.Addr.String(), State: string(e.State),
			BreakerDrop: e.BreakerDrop, InFlight: e.InFlight, Requests: tr.Requests, Retransmits: tr.Retransmits,
			Replies: tr.Replies, Timeouts: tr.Timeouts, SocketErrs: tr.SocketErrs, SRTTNs: int64(tr.SRTT)})
	}
	return r
}

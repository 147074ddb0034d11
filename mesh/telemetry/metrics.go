package telemetry

import "github.com/prometheus/client_golang/prometheus"

// metricDef is one metric zerohop exports: the one list the collectors
// build their descriptors from and docs/metrics.md documents (a test keeps
// the two in sync).
type metricDef struct {
	name   string
	kind   prometheus.ValueType // CounterValue, GaugeValue, or UntypedValue for a histogram
	labels []string
	help   string
	desc   *prometheus.Desc
}

const histogramKind = prometheus.UntypedValue

func def(name string, kind prometheus.ValueType, help string, labels ...string) *metricDef {
	return &metricDef{name: name, kind: kind, labels: labels, help: help,
		desc: prometheus.NewDesc(name, help, labels, nil)}
}

// The server's metrics, read from runtime.Server.Stats at scrape time.
var (
	mServerInfo      = def("zerohop_server_info", prometheus.GaugeValue, "Always 1; labels name the server's address and backend.", "addr", "backend")
	mServerDraining  = def("zerohop_server_draining", prometheus.GaugeValue, "1 once the server's Shutdown has begun (PINGs answered draining, new requests OVERLOADED), else 0.")
	mServerRequests  = def("zerohop_server_requests_total", prometheus.CounterValue, "Requests that reached a registered method, by the status of their answer (oneway requests too).", "method", "status")
	mServerDuration  = def("zerohop_server_request_duration_seconds", histogramKind, "Time from a request's arrival at its loop to its reply being built, per method.", "method")
	mRateLimited     = def("zerohop_ratelimited_total", prometheus.CounterValue, "Requests answered RATE_LIMITED (by a rate-limit admission policy), per method.", "method")
	mServerAbandoned = def("zerohop_server_abandoned_total", prometheus.CounterValue, "Blocking requests still queued when Shutdown's grace ran out; they never ran.")

	mLoopInfo       = def("zerohop_loop_info", prometheus.GaugeValue, "Always 1 per event loop; labels name its first queue, every queue it owns and its core.", "queue", "queues", "core")
	mLoopRX         = def("zerohop_loop_rx_packets_total", prometheus.CounterValue, "Datagrams (and TCP reads) the loop received.", "queue")
	mLoopTX         = def("zerohop_loop_tx_packets_total", prometheus.CounterValue, "Replies the loop handed to the kernel.", "queue")
	mLoopRequests   = def("zerohop_loop_requests_total", prometheus.CounterValue, "REQUEST frames the loop dispatched, by the path that received them (xsk, udp, tcp).", "queue", "path")
	mLoopPings      = def("zerohop_loop_pings_total", prometheus.CounterValue, "PINGs the loop answered.", "queue")
	mLoopOneway     = def("zerohop_loop_oneway_requests_total", prometheus.CounterValue, "Oneway requests (no reply wanted) the loop dispatched.", "queue")
	mLoopBlocking   = def("zerohop_loop_blocking_requests_total", prometheus.CounterValue, "Requests the loop handed to the blocking handlers' worker pool.", "queue")
	mLoopErrors     = def("zerohop_loop_error_answers_total", prometheus.CounterValue, "Answers the runtime gave instead of a handler's reply: BAD_FRAME, UNKNOWN_METHOD, INTERNAL (a handler panicked), OVERLOADED (pool full or draining), TOO_LARGE, DEADLINE_EXCEEDED.", "queue", "status")
	mLoopKicks      = def("zerohop_loop_tx_kicks_total", prometheus.CounterValue, "TX wakeups of the kernel the loop made.", "queue")
	mLoopRearms     = def("zerohop_loop_receive_rearms_total", prometheus.CounterValue, "Times a multishot receive had to be re-armed after its buffers ran out.", "queue")
	mLoopFillEmpty  = def("zerohop_xsk_fill_ring_empty_total", prometheus.CounterValue, "Times an AF_XDP fill ring of the loop ran dry (the kernel dropped packets then).", "queue")
	mLoopPartialSum = def("zerohop_xsk_partial_checksum_total", prometheus.CounterValue, "AF_XDP datagrams accepted with only the pseudo-header sum in their UDP checksum (a local peer's TX offload).", "queue")
	mLoopOpErrors   = def("zerohop_loop_op_errors_total", prometheus.CounterValue, "Failed loop operations by kind (wake, kick, poll, recv, accept).", "queue", "op")
	mLoopDuration   = def("zerohop_loop_request_duration_seconds", histogramKind, "Time from a request's arrival to its reply being built, per loop.", "queue")
	mDrops          = def("zerohop_drops_total", prometheus.CounterValue, "Datagrams dropped without a reply, by reason and by the path that received them, summed over the loops.", "reason", "path")
)

// The steering program's metrics, read from its maps at scrape time.
var (
	mXDPUp      = def("zerohop_xdp_up", prometheus.GaugeValue, "1 when the interface's steering program maps were read at this scrape, 0 when they could not be (the zerohop_xdp_* counters are then absent).", "iface")
	mXDPPackets = def("zerohop_xdp_packets_total", prometheus.CounterValue, "Packets the XDP program saw, by what it did with them (redirect to AF_XDP, pass to the kernel, acl_drop, loss_drop, unsealed_drop: an unsealed request to a server that requires sealed frames), summed over CPUs and every server of the interface.", "iface", "action")
	mXDPPassed  = def("zerohop_xdp_passed_packets_total", prometheus.CounterValue, "Packets passed to the kernel for a reason worth knowing (malformed, no_socket, stale, fragment, oversize); a part of action=\"pass\".", "iface", "reason")
	mACLHits    = def("zerohop_xdp_acl_rule_hits_total", prometheus.CounterValue, "Packets that matched an ACL rule since it was last written.", "iface", "source", "port", "action")
	mXDPServers = def("zerohop_xdp_servers", prometheus.GaugeValue, "zerohop servers holding a slot on the interface, by whether they heartbeat (live) or not (stale).", "iface", "state")
	mXDPSvc     = def("zerohop_xdp_services", prometheus.GaugeValue, "Services registered in the interface's steering program, by live or stale.", "iface", "state")
)

// The client side's metrics, registered only when a ClientSource is given,
// and then by the parts of ClientStats it covers (ClientCoverage).
var (
	mClientRequests = def("zerohop_client_requests_total", prometheus.CounterValue, "Calls that ended, by service, method and status: the answer's status, or NO_REPLY, CANCELLED, NO_ENDPOINTS, REFUSED, SOCKET_ERROR for calls that got no answer.", "service", "method", "status")
	mClientAttempts = def("zerohop_client_attempts_total", prometheus.CounterValue, "Transmissions of calls: first attempts, retransmissions and failovers.", "service", "method")
	mClientDuration = def("zerohop_client_request_duration_seconds", histogramKind, "Time from a call's start to its end, as the caller sees it.", "service", "method")
	mEndpoints      = def("zerohop_endpoints", prometheus.GaugeValue, "Endpoints the client knows, by service and state (serving, draining, ejected, unhealthy).", "service", "state")
	mBreakerState   = def("zerohop_breaker_state", prometheus.GaugeValue, "The circuit breaker's drop probability for an endpoint (largest over its methods): 0 passes every call, 1 refuses every call locally.", "service", "endpoint")
	mEndpointFlight = def("zerohop_endpoint_inflight", prometheus.GaugeValue, "Calls outstanding to an endpoint.", "service", "endpoint")

	mEndpointRequests    = def("zerohop_endpoint_requests_total", prometheus.CounterValue, "Calls and PINGs sent to an endpoint (first copies).", "service", "endpoint")
	mEndpointRetransmits = def("zerohop_endpoint_retransmits_total", prometheus.CounterValue, "Further copies of calls sent to an endpoint after their reply was late.", "service", "endpoint")
	mEndpointReplies     = def("zerohop_endpoint_replies_total", prometheus.CounterValue, "Replies from an endpoint that completed a call.", "service", "endpoint")
	mEndpointTimeouts    = def("zerohop_endpoint_timeouts_total", prometheus.CounterValue, "Calls to an endpoint that got no reply after their last copy.", "service", "endpoint")
	mEndpointSocketErrs  = def("zerohop_endpoint_socket_errors_total", prometheus.CounterValue, "Errors the socket reported for an endpoint (ICMP port unreachable, …).", "service", "endpoint")
	mEndpointBadReplies  = def("zerohop_endpoint_bad_replies_total", prometheus.CounterValue, "Datagrams from an endpoint that completed no call, by reason: duplicate (no call waited for its id: a late or repeated reply), malformed (not a valid reply), too_large (larger than the receive buffers).", "service", "endpoint", "reason")
	mEndpointSRTT        = def("zerohop_endpoint_srtt_seconds", prometheus.GaugeValue, "Smoothed round-trip time to an endpoint (RFC 6298 SRTT, what its retransmission timeout is made of); absent before the first reply.", "service", "endpoint")
)

// The tracer's own metrics, registered only when a Tracer is given.
var (
	mTraceSampled = def("zerohop_trace_sampled_total", prometheus.CounterValue, "Requests the tracer sampled, by where their span was made (loop: recorded on the event loop and turned into a span off it; blocking: on the worker).", "where")
	mTraceDropped = def("zerohop_trace_records_dropped_total", prometheus.CounterValue, "Sampled loop requests whose record found the tracer's ring full (no span was made for them).")
)

var (
	serverMetrics = []*metricDef{mServerInfo, mServerDraining, mServerRequests, mServerDuration, mRateLimited, mServerAbandoned,
		mLoopInfo, mLoopRX, mLoopTX, mLoopRequests, mLoopPings, mLoopOneway, mLoopBlocking, mLoopErrors, mLoopKicks,
		mLoopRearms, mLoopFillEmpty, mLoopPartialSum, mLoopOpErrors, mLoopDuration, mDrops}
	xdpMetrics = []*metricDef{mXDPUp, mXDPPackets, mXDPPassed, mACLHits, mXDPServers, mXDPSvc}
	// clientMetrics are those of every ClientSource; the others by coverage.
	clientMetrics          = []*metricDef{mEndpointFlight}
	clientMethodMetrics    = []*metricDef{mClientRequests, mClientAttempts, mClientDuration}
	clientStateMetrics     = []*metricDef{mEndpoints}
	clientBreakerMetrics   = []*metricDef{mBreakerState}
	clientTransportMetrics = []*metricDef{mEndpointRequests, mEndpointRetransmits, mEndpointReplies, mEndpointTimeouts,
		mEndpointSocketErrs, mEndpointBadReplies, mEndpointSRTT}
	traceMetrics = []*metricDef{mTraceSampled, mTraceDropped}
)

// allMetrics lists every metric zerohop can export.
func allMetrics() []*metricDef {
	var all []*metricDef
	for _, g := range [][]*metricDef{serverMetrics, xdpMetrics, clientMetrics, clientMethodMetrics, clientStateMetrics,
		clientBreakerMetrics, clientTransportMetrics, traceMetrics, sessionMetrics, sealServerMetric} {
		all = append(all, g...)
	}
	return all
}

// DurationBuckets are the upper bounds (seconds) of the duration
// histograms: gRPC's OpenTelemetry metrics (gRFC A66) latency buckets
// from 10 µs up, so dashboards built for gRPC read ours alike. A66's
// bound 0 is left out (a zero duration is never recorded apart).
var DurationBuckets = []float64{0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004,
	0.005, 0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2,
	0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1, 2, 5, 10, 20, 50, 100}

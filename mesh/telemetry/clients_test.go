package telemetry

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/zerohop/zerohop/runtime"
)

// TestClientsExportRuntimeCounters: Clients over real runtime.Clients
// exports each endpoint's transport counters as the engine counts them —
// first copies, replies, calls in flight while a blocking call is held,
// the SRTT once measured; a silent endpoint's retransmits and timeout
// match the copies that reached its socket — and registers none of the
// per-method, state or breaker metrics it has no data for.
func TestClientsExportRuntimeCounters(t *testing.T) {
	ts := startServer(t)
	var clients Clients
	_, ep := startAdmin(t, AdminConfig{}, Sources{Server: ts.srv, Client: &clients})

	c, err := runtime.Dial("udp", ts.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A second Client of the same endpoint shares its counters: one series.
	c2, err := runtime.Dial("udp", ts.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	clients.Add("test.Svc", c)
	clients.Add("test.Svc", c2)

	// A socket that reads and never answers: every copy reaches it.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	const attempts = 3
	cs, err := runtime.Dial("udp", silent.LocalAddr().String(), runtime.WithRetransmission(20*time.Millisecond, 40*time.Millisecond, attempts))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	clients.Add("test.Silent", cs)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const calls = 40
	for i := 0; i < calls; i++ {
		if _, err := c.Call(ctx, mEcho, []byte{8, byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.Call(ctx, mEcho, nil, nil); !errors.Is(err, runtime.ErrNoReply) {
		t.Fatalf("call to the silent endpoint: %v, want ErrNoReply", err)
	}
	copies := 0
	buf := make([]byte, 2048)
	silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	for copies < attempts+1 { // one more than sent: the read times out
		if _, err := silent.Read(buf); err != nil {
			break
		}
		copies++
		silent.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	}

	// One call held in a blocking handler: in flight.
	held := c.Go(ctx, mBlock, nil, nil, nil)
	<-ts.entered

	srvEP := map[string]string{"service": "test.Svc", "endpoint": ts.srv.Addr().String()}
	silentEP := map[string]string{"service": "test.Silent", "endpoint": silent.LocalAddr().String()}
	// The caller may send the first copy itself (the client loop asleep),
	// so the handler can run before the loop has taken the call and
	// counted it in flight: scrape until it has (bounded).
	var fams map[string]*dto.MetricFamily
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, body = get(t, ep, "/metrics")
		fams = parseMetrics(t, body)
		if s := sample(fams["zerohop_endpoint_inflight"], srvEP); s != nil && s.Gauge.GetValue() == 1 || time.Now().After(deadline) {
			break
		}
	}
	if fam := fams["zerohop_endpoint_requests_total"]; fam == nil || len(fam.Metric) != 2 {
		t.Fatalf("zerohop_endpoint_requests_total: want one series per endpoint (2), got %v", fam)
	}
	for _, w := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"zerohop_endpoint_requests_total", srvEP, calls + 1},
		{"zerohop_endpoint_replies_total", srvEP, calls},
		{"zerohop_endpoint_timeouts_total", srvEP, 0},
		{"zerohop_endpoint_requests_total", silentEP, 1},
		{"zerohop_endpoint_retransmits_total", silentEP, attempts - 1},
		{"zerohop_endpoint_replies_total", silentEP, 0},
		{"zerohop_endpoint_timeouts_total", silentEP, 1},
		{"zerohop_endpoint_socket_errors_total", silentEP, 0},
	} {
		if got := counterValue(t, fams, w.name, w.labels); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
	if copies != attempts {
		t.Errorf("the silent socket got %d copies, want %d (requests + retransmits)", copies, attempts)
	}
	for _, reason := range []string{"duplicate", "malformed", "too_large"} {
		l := map[string]string{"service": "test.Svc", "endpoint": ts.srv.Addr().String(), "reason": reason}
		if s := sample(fams["zerohop_endpoint_bad_replies_total"], l); s == nil {
			t.Errorf("no zerohop_endpoint_bad_replies_total%v", l)
		}
	}
	if s := sample(fams["zerohop_endpoint_inflight"], srvEP); s == nil || s.Gauge.GetValue() != 1 {
		t.Errorf("zerohop_endpoint_inflight%v = %v, want 1 (the held call)", srvEP, s)
	}
	if s := sample(fams["zerohop_endpoint_srtt_seconds"], srvEP); s == nil || s.Gauge.GetValue() <= 0 || s.Gauge.GetValue() > 5 {
		t.Errorf("zerohop_endpoint_srtt_seconds%v = %v, want a measured round trip", srvEP, s)
	}
	if s := sample(fams["zerohop_endpoint_srtt_seconds"], silentEP); s != nil {
		t.Errorf("zerohop_endpoint_srtt_seconds%v = %v, want absent (no reply ever came)", silentEP, s)
	}
	for _, absent := range []string{"zerohop_client_requests_total", "zerohop_client_attempts_total",
		"zerohop_client_request_duration_seconds", "zerohop_endpoints", "zerohop_breaker_state"} {
		if fams[absent] != nil || strings.Contains(string(body), "# HELP "+absent+" ") {
			t.Errorf("%s is exported, but Clients has no data for it", absent)
		}
	}
	// /stat carries the same endpoints.
	rep := jsonStat(t, ep)
	if rep.Client == nil || len(rep.Client.Endpoints) != 2 || len(rep.Client.Methods) != 0 ||
		rep.Client.Coverage != (ClientCoverage{Transport: true}) {
		t.Fatalf("/stat client section %+v, want 2 endpoints, no methods, transport coverage only", rep.Client)
	}
	for _, e := range rep.Client.Endpoints {
		if e.Service == "test.Svc" && (e.Addr != ts.srv.Addr().String() || e.Requests != calls+1 || e.Replies != calls ||
			e.InFlight != 1 || e.SRTTNs <= 0) {
			t.Errorf("/stat endpoint %+v, want %d requests, %d replies, 1 in flight, an SRTT", e, calls+1, calls)
		}
		if e.Service == "test.Silent" && (e.Requests != 1 || e.Retransmits != attempts-1 || e.Timeouts != 1 || e.SRTTNs != 0) {
			t.Errorf("/stat silent endpoint %+v", e)
		}
	}

	close(ts.release)
	<-held.Done
	if held.Err != nil {
		t.Fatalf("held call: %v", held.Err)
	}
	held.Release()
	_, body = get(t, ep, "/metrics")
	fams = parseMetrics(t, body)
	if got := counterValue(t, fams, "zerohop_endpoint_replies_total", srvEP); got != calls+1 {
		t.Errorf("after the held call: replies %v, want %d", got, calls+1)
	}
	if s := sample(fams["zerohop_endpoint_inflight"], srvEP); s == nil || s.Gauge.GetValue() != 0 {
		t.Errorf("after the held call: in flight %v, want 0", s)
	}

	// Removing every Client of an endpoint removes its series.
	clients.Remove(c)
	clients.Remove(c2)
	_, body = get(t, ep, "/metrics")
	fams = parseMetrics(t, body)
	if s := sample(fams["zerohop_endpoint_requests_total"], srvEP); s != nil {
		t.Errorf("after Remove: %v still exported", srvEP)
	}
	if s := sample(fams["zerohop_endpoint_requests_total"], silentEP); s == nil {
		t.Errorf("after removing the other endpoint's Clients: %v gone", silentEP)
	}
}

// TestClientsRemoveKeepsSharedEndpoint: an endpoint stays reported while
// one of the Clients added for it remains.
func TestClientsRemoveKeepsSharedEndpoint(t *testing.T) {
	ts := startServer(t)
	var clients Clients
	var cs [2]*runtime.Client
	for i := range cs {
		c, err := runtime.Dial("udp", ts.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
		clients.Add("test.Svc", c)
	}
	if n := len(clients.ClientStats().Endpoints); n != 1 {
		t.Fatalf("two Clients of one endpoint: %d endpoints, want 1", n)
	}
	clients.Remove(cs[0])
	if n := len(clients.ClientStats().Endpoints); n != 1 {
		t.Fatalf("one Client left: %d endpoints, want 1", n)
	}
	clients.Add("other.Svc", cs[1])
	if n := len(clients.ClientStats().Endpoints); n != 2 {
		t.Fatalf("the same Client under a second service: %d endpoints, want 2", n)
	}
	clients.Remove(cs[1])
	if n := len(clients.ClientStats().Endpoints); n != 0 {
		t.Fatalf("every Client removed: %d endpoints, want 0", n)
	}
}

package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	gproto "google.golang.org/protobuf/proto"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"

	_ "github.com/zerohop/zerohop/runtime/xdp" // the AF_XDP backend
)

func TestMain(m *testing.M) { leak.Main(m) }

// Methods of the test server.
const (
	mEcho    = "test.Svc/Echo"    // loop: echoes the payload
	mLimited = "test.Svc/Limited" // loop: answers RATE_LIMITED
	mPanic   = "test.Svc/Panic"   // loop: panics (answered INTERNAL)
	mBlock   = "test.Svc/Block"   // blocking: waits for the test's release channel
	mCtx     = "test.Svc/Ctx"     // blocking: reports the span in its context
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type testServer struct {
	srv     *runtime.Server
	release chan struct{} // closed (or sent to) to let mBlock handlers return
	entered chan struct{} // one value per mBlock handler that started
	ctxSeen chan ctxSeen  // what mCtx handlers found in their context
	hook    func(*runtime.Request)
}

type ctxSeen struct {
	traceID [16]byte
	spanID  [8]byte
	valid   bool
}

// startServer serves the test methods on the io_uring backend on a
// loopback port, shut down in cleanup.
func startServer(t testing.TB, opts ...runtime.Option) *testServer {
	t.Helper()
	opts = append([]runtime.Option{runtime.WithBackend(runtime.BackendUring), runtime.WithLogger(discardLogger()),
		runtime.WithWorkers(4, 64)}, opts...)
	srv, err := runtime.Listen("udp", "127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ts := &testServer{srv: srv, release: make(chan struct{}), entered: make(chan struct{}, 64), ctxSeen: make(chan ctxSeen, 64)}
	srv.Handle(mEcho, func(req *runtime.Request, resp *runtime.Response) { resp.Write(req.Payload()) })
	srv.Handle(mLimited, func(req *runtime.Request, resp *runtime.Response) {
		resp.Error(proto.StatusRateLimited, "slow down")
	})
	srv.Handle(mPanic, func(req *runtime.Request, resp *runtime.Response) { panic("test panic") })
	srv.HandleBlocking(mBlock, func(req *runtime.Request, resp *runtime.Response) {
		ts.entered <- struct{}{}
		<-ts.release
	})
	srv.HandleBlocking(mCtx, func(req *runtime.Request, resp *runtime.Response) {
		sc := spanContextOf(req.Context())
		ts.ctxSeen <- sc
	})
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ts
}

// rawClient sends hand-built GWIR frames from a kernel UDP socket: the
// runtime's client cannot send a TRACE tag yet.
type rawClient struct {
	t    testing.TB
	conn *net.UDPConn
	out  []byte
	in   []byte
	id   uint64
}

func newRawClient(t testing.TB, to netip.AddrPort) *rawClient {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("dial %s: %v", to, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, out: make([]byte, 2048), in: make([]byte, 2048)}
}

// call sends one request and waits (2 s at most) for its reply.
func (c *rawClient) call(method string, x *proto.ExtBuilder, payload []byte) proto.Frame {
	c.t.Helper()
	f := c.send(method, x, payload)
	return c.reply(f.RequestID())
}

func (c *rawClient) send(method string, x *proto.ExtBuilder, payload []byte) proto.Frame {
	c.t.Helper()
	c.id++
	if x == nil {
		x = &proto.ExtBuilder{}
	}
	f, err := proto.EncodeRequestExt(c.out, c.id, proto.MethodID(method), 0, x, payload)
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	if _, err := c.conn.Write(f); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	return f
}

func (c *rawClient) reply(id uint64) proto.Frame {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, err := c.conn.Read(c.in)
		if err != nil {
			c.t.Fatalf("waiting for reply %d: %v", id, err)
		}
		f, err := proto.Parse(c.in[:n])
		if err == nil && f.RequestID() == id {
			return f
		}
	}
}

// get fetches path from an admin endpoint.
func get(t testing.TB, ep Endpoint, path string) (int, []byte) {
	t.Helper()
	c := ep.HTTPClient(5 * time.Second)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://zerohop" + path)
	if err != nil {
		t.Fatalf("GET %s %s: %v", ep, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s %s: reading: %v", ep, path, err)
	}
	return resp.StatusCode, body
}

func startAdmin(t testing.TB, cfg AdminConfig, src Sources) (*Admin, Endpoint) {
	t.Helper()
	a, err := NewAdmin(cfg, src)
	if err != nil {
		t.Fatalf("NewAdmin: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Admin.Start: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, Endpoint{"unix", a.Addrs()[0].String()}
}

// parseMetrics parses Prometheus text with Prometheus's own parser.
func parseMetrics(t testing.TB, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("expfmt cannot parse /metrics: %v\n%s", err, text)
	}
	return fams
}

// sample finds the metric of fam whose labels include want, or nil.
func sample(fam *dto.MetricFamily, want map[string]string) *dto.Metric {
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func counterValue(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(fams[name], labels)
	if m == nil {
		t.Fatalf("no %s%v in /metrics", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither counter nor gauge", name, labels)
	return 0
}

// otlpReceiver is an in-process OTLP/HTTP traces endpoint that decodes
// what it receives with the OTLP protobuf types.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []map[string]string
}

func newOTLPReceiver(t testing.TB) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Method != http.MethodPost {
			http.NotFound(w, req)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg coltracepb.ExportTraceServiceRequest
		if err := gproto.Unmarshal(raw, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			attrs := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				attrs[kv.Key] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, s)
					r.res = append(r.res, attrs)
				}
			}
		}
		r.mu.Unlock()
		out, _ := gproto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) url() string { return r.srv.URL + "/v1/traces" }

func (r *otlpReceiver) take() ([]*tracepb.Span, []map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, res := r.spans, r.res
	r.spans, r.res = nil, nil
	return s, res
}

func attrs(s *tracepb.Span) map[string]any {
	out := map[string]any{}
	for _, kv := range s.Attributes {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.Key] = v.IntValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.Key] = v.BoolValue
		}
	}
	return out
}

func spanContextOf(ctx context.Context) ctxSeen {
	sc := trace.SpanContextFromContext(ctx)
	return ctxSeen{traceID: sc.TraceID(), spanID: sc.SpanID(), valid: sc.IsValid()}
}

func jsonStat(t testing.TB, ep Endpoint) StatReport {
	t.Helper()
	code, body := get(t, ep, "/stat")
	if code != http.StatusOK {
		t.Fatalf("/stat: %d %s", code, body)
	}
	var rep StatReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/stat is not a StatReport: %v\n%s", err, body)
	}
	return rep
}

func hasLine(text []byte, prefix string) bool {
	for _, l := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

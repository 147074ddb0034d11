package runtime

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"google.golang.org/protobuf/encoding/protowire"
)

// benchServer is a Server with handlers and counters but no backend: enough
// for the request path, which the benchmarks drive without a kernel.
func benchServer(tb testing.TB, opts ...Option) *Server {
	cfg := defaultConfig()
	cfg.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			tb.Fatal(err)
		}
	}
	s := &Server{cfg: cfg}
	s.core = engine.NewServer(engine.Config{Logger: cfg.logger, Loops: 1, Workers: 1, WorkQueue: 1})
	s.Handle("zerohop.Echo/Echo", func(req *Request, resp *Response) { resp.Write(req.Payload()) })
	s.Handle("zerohop.Echo/Sum", func(req *Request, resp *Response) {
		var sum uint64
		f := req.Fields()
		for f.Next() {
			if fl := f.Field(); fl.Num() == 1 {
				sum += fl.Uint64()
			}
		}
		resp.AppendVarint(1, sum)
	})
	return s
}

func payload64() []byte {
	var p []byte
	for i := 0; len(p) < 54; i++ {
		p = protowire.AppendTag(p, 1, protowire.VarintType)
		p = protowire.AppendVarint(p, uint64(1000+i))
	}
	p = protowire.AppendTag(p, 2, protowire.BytesType)
	return protowire.AppendBytes(p, make([]byte, 64-len(p)-2))
}

// BenchmarkDispatch is the shared request path: parse a 64-byte-payload
// request, run the handler, seal the reply. Each request is a loop pass
// of its own (NewPass), as at light load: its arrival costs a clock read.
func BenchmarkDispatch(b *testing.B) {
	for _, method := range []string{"zerohop.Echo/Echo", "zerohop.Echo/Sum"} {
		b.Run(method[len("zerohop.Echo/"):], func(b *testing.B) {
			d := benchDispatcher(benchServer(b))
			req, _ := proto.EncodeRequest(make([]byte, 128), 1, proto.MethodID(method), 0, payload64())
			out := make([]byte, 2048)
			peer := netip.MustParseAddrPort("10.0.0.2:5000")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.NewPass()
				if r, f := d.Dispatch(req, peer, engine.PathUDP, out, nil); r != engine.Ready || len(f) == 0 {
					b.Fatalf("dispatch: %v %d", r, len(f))
				}
			}
		})
	}
}

// BenchmarkDispatchBatch is BenchmarkDispatch/Echo with 64 requests per
// loop pass, as under load, where one clock read stamps a whole batch.
func BenchmarkDispatchBatch(b *testing.B) {
	d := benchDispatcher(benchServer(b))
	req, _ := proto.EncodeRequest(make([]byte, 128), 1, proto.MethodID("zerohop.Echo/Echo"), 0, payload64())
	out := make([]byte, 2048)
	peer := netip.MustParseAddrPort("10.0.0.2:5000")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			d.NewPass()
		}
		if r, f := d.Dispatch(req, peer, engine.PathUDP, out, nil); r != engine.Ready || len(f) == 0 {
			b.Fatalf("dispatch: %v %d", r, len(f))
		}
	}
}

// BenchmarkDispatchExtAndMiddleware is BenchmarkDispatch/Echo with what
// the mesh adds: a request carrying the extension block (ATTEMPT,
// DEADLINE, CALLER; the reply gets SERVICE_TIME), and the plain request
// through one no-op middleware and one no-op admission middleware.
func BenchmarkDispatchExtAndMiddleware(b *testing.B) {
	noop := func(m MethodInfo, next Handler) Handler {
		return HandlerFunc(func(req *Request, resp *Response) { next.ServeGWIR(req, resp) })
	}
	var x proto.ExtBuilder
	x.SetAttempt(0)
	x.SetDeadline(time.Second)
	x.SetCaller([]byte("svc-a"))
	ext, _ := proto.EncodeRequestExt(make([]byte, 256), 1, proto.MethodID("zerohop.Echo/Echo"), 0, &x, payload64())
	plain, _ := proto.EncodeRequest(make([]byte, 128), 1, proto.MethodID("zerohop.Echo/Echo"), 0, payload64())
	for _, c := range []struct {
		name string
		req  []byte
		opts []Option
	}{
		{"Ext", ext, nil},
		{"Middleware", plain, []Option{WithMiddleware(noop)}},
		{"Admission+Middleware", plain, []Option{WithAdmission(noop), WithMiddleware(noop)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			d := benchDispatcher(benchServer(b, c.opts...))
			out := make([]byte, 2048)
			peer := netip.MustParseAddrPort("10.0.0.2:5000")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.NewPass()
				if r, f := d.Dispatch(c.req, peer, engine.PathUDP, out, nil); r != engine.Ready || len(f) == 0 {
					b.Fatalf("dispatch: %v %d", r, len(f))
				}
			}
		})
	}
}

// BenchmarkXSKFramePath is what the XSK loop does per frame between the
// RX and TX rings: Ethernet/IPv4/UDP parse with checksum checks, dispatch,
// the reply moved to the payload's start, headers swapped and checksummed.
func BenchmarkXSKFramePath(b *testing.B) {
	d := benchDispatcher(benchServer(b))
	gwir, _ := proto.EncodeRequest(make([]byte, 128), 1, proto.MethodID("zerohop.Echo/Echo"), 0, payload64())
	frameBuf := make([]byte, 4096)
	template, err := netstack.BuildUDP(frameBuf, &netstack.UDPFields{
		SrcMAC: netstack.MAC{2, 0, 0, 0, 0, 2}, DstMAC: netstack.MAC{2, 0, 0, 0, 0, 1},
		Src: netip.MustParseAddrPort("10.0.0.2:5000"), Dst: netip.MustParseAddrPort("10.0.0.1:7000"),
	}, gwir)
	if err != nil {
		b.Fatal(err)
	}
	n := len(template)
	request := append([]byte(nil), template...)
	var pkt netstack.Packet
	// As the socket parses on a virtual interface (veth).
	parser := netstack.Parser{Port: 7000, AcceptPartialChecksum: true}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.NewPass()
		copy(frameBuf, request) // a fresh request in the frame each time
		if err := parser.Parse(frameBuf[:n], &pkt); err != nil {
			b.Fatal(err)
		}
		room := pkt.PayloadRoom()
		off := (len(pkt.Payload) + 63) &^ 63
		out := room[off : off+1472 : off+1472]
		peer := netip.AddrPortFrom(pkt.IPv4.SourceAddress(), pkt.UDP.SourcePort())
		r, reply := d.Dispatch(pkt.Payload, peer, engine.PathXSK, out, nil)
		if r != engine.Ready {
			b.Fatal("no reply")
		}
		m := copy(room, reply)
		if _, err := netstack.Reply(&pkt, m); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDispatchAllocatesNothing(t *testing.T) {
	d := benchDispatcher(benchServer(t))
	req, _ := proto.EncodeRequest(make([]byte, 128), 1, proto.MethodID("zerohop.Echo/Sum"), 0, payload64())
	bad := append([]byte(nil), req...)
	bad[23] = 0x80
	unknown, _ := proto.EncodeRequest(make([]byte, 128), 1, 12345, 0, nil)
	out := make([]byte, 2048)
	peer := netip.MustParseAddrPort("10.0.0.2:5000")
	for name, in := range map[string][]byte{"sum": req, "bad frame": bad, "unknown method": unknown, "short": req[:10]} {
		if allocs := testing.AllocsPerRun(100, func() { d.Dispatch(in, peer, engine.PathUDP, out, nil) }); allocs != 0 {
			t.Errorf("%s: %v allocs per dispatch", name, allocs)
		}
	}
}

// benchDispatcher is a loop's dispatcher for s, outside any loop.
func benchDispatcher(s *Server) *engine.Dispatcher {
	var c engine.LoopCounters
	d := new(engine.Dispatcher)
	d.Init(s.core, 0, 0, &c)
	return d
}

// TestArrivalIsPerPass: requests dispatched in one loop pass share their
// arrival time, the next pass stamps a later one, and a DEADLINE budget
// counts from the arrival.
func TestArrivalIsPerPass(t *testing.T) {
	s := benchServer(t)
	var arrivals []time.Time
	var deadlines []time.Duration
	s.Handle("zerohop.Echo/When", func(req *Request, resp *Response) {
		arrivals = append(arrivals, req.Arrival())
		if d, ok := req.Deadline(); ok {
			deadlines = append(deadlines, d.Sub(req.Arrival()))
		}
	})
	d := benchDispatcher(s)
	var x proto.ExtBuilder
	x.SetDeadline(250 * time.Millisecond)
	req, _ := proto.EncodeRequestExt(make([]byte, 256), 1, proto.MethodID("zerohop.Echo/When"), 0, &x, nil)
	out := make([]byte, 2048)
	peer := netip.MustParseAddrPort("10.0.0.2:5000")
	before := time.Now()
	d.NewPass()
	d.Dispatch(req, peer, engine.PathUDP, out, nil)
	time.Sleep(2 * time.Millisecond) // the clock must move between passes
	d.Dispatch(req, peer, engine.PathUDP, out, nil)
	d.NewPass()
	d.Dispatch(req, peer, engine.PathUDP, out, nil)
	if len(arrivals) != 3 {
		t.Fatalf("handler ran %d times, want 3", len(arrivals))
	}
	if arrivals[0].Before(before) {
		t.Errorf("arrival %v is before the pass began (%v)", arrivals[0], before)
	}
	if !arrivals[1].Equal(arrivals[0]) {
		t.Errorf("two requests of one pass arrived at %v and %v, want one time", arrivals[0], arrivals[1])
	}
	if !arrivals[2].After(arrivals[1]) {
		t.Errorf("the next pass's request arrived at %v, not after %v", arrivals[2], arrivals[1])
	}
	for i, dl := range deadlines {
		if dl != 250*time.Millisecond {
			t.Errorf("request %d: deadline is %v after arrival, want 250ms", i, dl)
		}
	}
	if len(deadlines) != 3 {
		t.Errorf("%d deadlines seen, want 3", len(deadlines))
	}
}

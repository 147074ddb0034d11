package policy_test

import (
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/shed"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// Policies the request-path benchmarks install: each admits the benchmark's
// calls after doing its real work (authz walks rules that do not match
// before the one that allows; the limit is far above the rate).
const (
	benchAuthz = `default: deny
rules:
  - name: lab
    action: deny
    sources: [10.9.0.0/16]
  - name: no-writes-for-batch
    action: deny
    callers: [batch]
    methods: ["Put*"]
  - name: local
    action: allow
    sources: [127.0.0.0/8]
    callers: [web]
`
	benchLimits = `limits:
  - name: high
    method: "*"
    rate: 1e9
    burst: 1000000
`
)

// blockingEcho is the echo handler registered as a blocking method, for
// the shedder (which guards the worker pool only).
const blockingEcho = "bench.Blocking/Echo"

// BenchmarkServerPolicies calls a real server on loopback (io_uring
// sockets) one call at a time from a kernel UDP socket, with each policy
// installed and with all of them, against the same server without any.
// ns/op is the round trip, dominated by the kernel; server-ns/op is the
// server's own receive-to-reply time per call (from its latency
// histogram), where a policy's cost shows; allocs/op counts the whole
// process, server goroutines included.
func BenchmarkServerPolicies(b *testing.B) {
	type variant struct {
		name     string
		method   string
		doc      string
		shed     bool
		noPolicy bool
	}
	for _, v := range []variant{
		{name: "none", method: echo.EchoMethod, noPolicy: true},
		{name: "empty", method: echo.EchoMethod},
		{name: "authz", method: echo.EchoMethod, doc: benchAuthz},
		{name: "ratelimit", method: echo.EchoMethod, doc: benchLimits},
		{name: "all", method: echo.EchoMethod, doc: benchAuthz + benchLimits, shed: true},
		{name: "blocking-none", method: blockingEcho, noPolicy: true},
		{name: "blocking-shed", method: blockingEcho, shed: true},
		{name: "blocking-all", method: blockingEcho, doc: benchAuthz + benchLimits, shed: true},
	} {
		b.Run(v.name, func(b *testing.B) {
			var pol *policy.Server
			opts := []runtime.Option{runtime.WithBackend(runtime.BackendUring), runtime.WithLogger(quietLogger())}
			if !v.noPolicy {
				cfg := policy.ServerConfig{Loops: 1, Logger: quietLogger()}
				if v.shed {
					cfg.Shed = &shed.Config{}
				}
				var err error
				if pol, err = policy.NewServer(cfg); err != nil {
					b.Fatal(err)
				}
				opts = append(opts, pol.Options()...)
			}
			srv, err := runtime.Listen("udp", loopback().String(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			echo.Register(srv)
			srv.HandleBlocking(blockingEcho, echo.Echo)
			if pol != nil {
				if _, err := pol.Load(mustParse(b, v.doc), "bench"); err != nil {
					b.Fatal(err)
				}
			}
			if err := srv.Start(); err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown(b.Context())
			c := dial(b, nil, netipAddr(""), srv.Addr())
			req := request(1, v.method, "web", payload64())
			buf := make([]byte, 2048)
			call := func() {
				if _, err := c.conn.Write(req); err != nil {
					b.Fatal(err)
				}
				n, err := c.conn.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				if st := proto.Frame(buf[:n]).Status(); st != proto.StatusOK {
					b.Fatalf("status %v", st)
				}
			}
			c.conn.SetReadDeadline(time.Now().Add(time.Minute))
			for range 1000 { // warm up: buffers, the shedder's window
				call()
			}
			before := srv.Stats().Total.Latency
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				call()
			}
			b.StopTimer()
			after := srv.Stats().Total.Latency
			if n := after.Count() - before.Count(); n > 0 {
				b.ReportMetric(float64(after.Sum()-before.Sum())/float64(n), "server-ns/op")
			}
		})
	}
}

// payload64 is a 64-byte payload of varints and bytes, like the runtime's
// dispatch benchmark.
func payload64() []byte {
	p := make([]byte, 0, 64)
	for i := 0; len(p) < 54; i++ {
		p = append(p, 0x08, byte(i+1))
	}
	p = append(p, 0x12, byte(64-len(p)-2))
	return append(p, make([]byte, 64-len(p))...)
}

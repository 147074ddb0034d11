package runtime_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bench"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	zr "github.com/zerohop/zerohop/runtime"
)

// BenchmarkEcho measures echo round trips of a 64-byte payload across a
// namespace pair, with the zerohop client keeping N calls outstanding,
// against zerohop on XSK, zerohop on io_uring sockets and a plain Go
// net.UDPConn echo server — all in one run, so their ratios are
// comparable. Each reports calls/s and p50/p99 latency; ns/op is the
// wall time per call.
//
//	go test -run '^$' -bench BenchmarkEcho -benchtime 20000x -count 5 ./runtime
func BenchmarkEcho(b *testing.B) {
	for _, server := range []string{"xsk", "uring", "netudp"} {
		for _, outstanding := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/outstanding=%d", server, outstanding), func(b *testing.B) {
				benchEcho(b, server, outstanding)
			})
		}
	}
}

func benchEcho(b *testing.B, server string, outstanding int) {
	link := topo.Pair(b, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, xskPort)
	switch server {
	case "netudp":
		ctx, cancel := context.WithCancel(context.Background())
		served := link.A.Host.Go(func() error { return bench.ServeNetUDP(ctx, addr.String()) })
		defer func() {
			cancel()
			if err := <-served; err != nil {
				b.Error(err)
			}
		}()
	default:
		backend := zr.BackendXSK
		if server == "uring" {
			backend = zr.BackendUring
		}
		benchEchoServer(b, link, addr, backend)
	}
	c, err := zr.Dial("udp", addr.String(), zr.WithEngine(engineIn(b, link.B.Host)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	payload := make([]byte, 64)
	payload[0], payload[1] = 0x0a, 62 // field 1, 62 bytes
	// Warm up (ARP, caches) before timing.
	for i := 0; i < 100; i++ {
		if _, err := c.Call(ctx, echo.EchoMethod, payload, nil); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan *zr.Call, outstanding)
	started := map[*zr.Call]time.Time{}
	latencies := make([]time.Duration, 0, b.N)
	bufs := make([][]byte, outstanding)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 128)
	}
	issued := 0
	issue := func() {
		call := c.Go(ctx, echo.EchoMethod, payload, bufs[issued%outstanding], done)
		started[call] = time.Now()
		issued++
	}
	b.ResetTimer()
	begin := time.Now()
	for issued < outstanding && issued < b.N {
		issue()
	}
	for finished := 0; finished < b.N; finished++ {
		call := <-done
		latencies = append(latencies, time.Since(started[call]))
		delete(started, call)
		if call.Err != nil {
			b.Fatal(call.Err)
		}
		call.Release()
		if issued < b.N {
			issue()
		}
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
}

// benchEchoServer serves the echo service on backend in link.A's
// namespace, its loop on core 0, until the benchmark ends.
func benchEchoServer(b *testing.B, link *topo.Link, addr netip.AddrPort, backend zr.Backend, opts ...zr.Option) *zr.Server {
	b.Helper()
	var srv *zr.Server
	opts = append([]zr.Option{zr.WithInterface(link.A.Iface), zr.WithBackend(backend), zr.WithQueues(0), zr.WithCores(0),
		zr.WithLogger(discardLogger())}, opts...)
	if err := link.A.Host.Do(func() (err error) {
		srv, err = zr.Listen("udp", addr.String(), opts...)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

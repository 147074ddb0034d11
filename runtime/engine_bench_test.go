package runtime_test

import (
	"context"
	"net"
	"net/netip"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
	"golang.org/x/sys/unix"
)

// BenchmarkClientEngine compares the client engine with a plain Go
// net.UDPConn client against the same zerohop XSK server (its loop pinned
// to core 0, busy polling) between two namespaces, in one run:
//
//   - seq: one call outstanding; net.UDPConn does write+read per call,
//     the engine Call (on a caller lane, by default, and through the loop
//     with WithCallerLanes(0)), and both with a fixed WithCallerSpin;
//
//   - 64: 64 calls outstanding; net.UDPConn from 64 goroutines each with
//     its own socket, the engine from one goroutine with Go.
//
//     go test -run '^$' -bench BenchmarkClientEngine -benchtime 20000x -count 5 ./runtime
func BenchmarkClientEngine(b *testing.B) {
	link := topo.Pair(b, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, xskPort)
	benchEchoServer(b, link, addr, zr.BackendXSK)
	payload := make([]byte, 64)
	payload[0], payload[1] = 0x0a, 62

	b.Run("seq/net.UDPConn", func(b *testing.B) {
		pinCaller(b)
		var conn *net.UDPConn
		if err := link.B.Host.Do(func() (err error) {
			conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		lat := udpConnCalls(b, conn, payload, b.N)
		reportLatency(b, lat)
	})
	for _, mode := range []struct {
		name string
		opts []zr.EngineOption
	}{
		{"engine", nil},
		{"engine+spin", []zr.EngineOption{zr.WithCallerSpin(200 * time.Microsecond)}},
		{"engine-nolanes", []zr.EngineOption{zr.WithCallerLanes(0)}},
		{"engine-nolanes+spin", []zr.EngineOption{zr.WithCallerLanes(0), zr.WithCallerSpin(200 * time.Microsecond)}},
	} {
		b.Run("seq/"+mode.name, func(b *testing.B) {
			if !strings.Contains(mode.name, "nolanes") {
				// Through the loop, the caller would share the loop's core.
				pinCaller(b)
			}
			c, err := zr.Dial("udp", addr.String(), zr.WithEngine(engineIn(b, link.B.Host, mode.opts...)))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			buf := make([]byte, 0, 128)
			for range 200 {
				if _, err := c.Call(ctx, echo.EchoMethod, payload, buf); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := c.Call(ctx, echo.EchoMethod, payload, buf); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
	b.Run("64/net.UDPConn", func(b *testing.B) {
		const workers = 64
		conns := make([]*net.UDPConn, workers)
		if err := link.B.Host.Do(func() error {
			for i := range conns {
				var err error
				if conns[i], err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		per := (b.N + workers - 1) / workers
		var wg sync.WaitGroup
		b.ResetTimer()
		begin := time.Now()
		for _, conn := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				udpConnCalls(b, conn, payload, per)
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(per*workers)/time.Since(begin).Seconds(), "calls/s")
	})
	b.Run("64/engine", func(b *testing.B) {
		c, err := zr.Dial("udp", addr.String(), zr.WithEngine(engineIn(b, link.B.Host)))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		const outstanding = 64
		ctx := context.Background()
		done := make(chan *zr.Call, outstanding)
		bufs := make([][]byte, outstanding)
		for i := range bufs {
			bufs[i] = make([]byte, 0, 128)
		}
		issued := 0
		b.ReportAllocs()
		b.ResetTimer()
		begin := time.Now()
		for ; issued < outstanding && issued < b.N; issued++ {
			c.Go(ctx, echo.EchoMethod, payload, bufs[issued%outstanding], done)
		}
		for finished := 0; finished < b.N; finished++ {
			call := <-done
			if call.Err != nil {
				b.Fatal(call.Err)
			}
			buf := call.Reply.Payload[:0]
			call.Release()
			if issued < b.N {
				c.Go(ctx, echo.EchoMethod, payload, buf, done)
				issued++
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "calls/s")
	})
}

// pinCaller runs the rest of a sequential benchmark on the last core, the
// one the server (on core 0) leaves free: where the scheduler put the
// caller otherwise made the round trip bimodal (about 10 or 20 µs, for
// every client alike) from one run to the next.
func pinCaller(b *testing.B) {
	goruntime.LockOSThread()
	b.Cleanup(goruntime.UnlockOSThread)
	var set unix.CPUSet
	set.Set(goruntime.NumCPU() - 1)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		var all unix.CPUSet
		for i := range goruntime.NumCPU() {
			all.Set(i)
		}
		_ = unix.SchedSetaffinity(0, &all)
	})
}

// udpConnCalls makes n sequential GWIR calls on conn, retransmitting
// after 20 ms, and returns their latencies.
func udpConnCalls(b *testing.B, conn *net.UDPConn, payload []byte, n int) []time.Duration {
	req := make([]byte, 256)
	in := make([]byte, 2048)
	method := proto.MethodID(echo.EchoMethod)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		f, err := proto.EncodeRequest(req, uint64(i+1), method, 0, payload)
		if err != nil {
			b.Error(err)
			return lat
		}
		t0 := time.Now()
		for attempt := 0; ; attempt++ {
			if attempt == 100 {
				b.Error("no reply after 100 attempts")
				return lat
			}
			if _, err := conn.Write(f); err != nil {
				b.Error(err)
				return lat
			}
			conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			m, err := conn.Read(in)
			if err != nil {
				continue
			}
			if r, err := proto.Parse(in[:m]); err == nil && r.RequestID() == uint64(i+1) {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	return lat
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}

package mesh_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh"
	"github.com/zerohop/zerohop/mesh/balance"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// echoServers starts n echo servers on loopback.
func echoServers(tb testing.TB, n int) []runtime.Endpoint {
	tb.Helper()
	var eps []runtime.Endpoint
	for range n {
		var srv *runtime.Server
		var err error
		// The kernel's free UDP port may be one that another zerohop
		// process on this machine claims for TCP: take another.
		for range 5 {
			srv, err = runtime.Listen("udp", "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring), runtime.WithBusyPoll(0), runtime.WithLogger(quiet))
			if !errors.Is(err, runtime.ErrAddrInUse) {
				break
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
		echo.Register(srv)
		if err := srv.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { srv.Shutdown(context.Background()) })
		eps = append(eps, runtime.Endpoint{Addr: srv.Addr()})
	}
	return eps
}

func engine(tb testing.TB) *runtime.Engine {
	eng, err := runtime.NewEngine(runtime.WithEngineLogger(quiet))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	return eng
}

// The defaults in one call: with a dead endpoint among two live ones every
// call succeeds (failover, then ejection), and the dead one is left alone
// after its first failures.
func TestDialServiceDefaults(t *testing.T) {
	eps := echoServers(t, 2)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	eps = append(eps, runtime.Endpoint{Addr: dead})
	cli, err := mesh.DialService("zerohop.Echo", static.New(eps...), runtime.WithEngine(engine(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2000 {
		p := []byte{0x08, byte(i), 0x08, byte(i >> 8)}
		rep, err := cli.Call(ctx, echo.EchoMethod, p, nil)
		if err != nil || !bytes.Equal(rep.Payload, p) {
			t.Fatalf("call %d: %x, %v", i, rep.Payload, err)
		}
	}
	for _, sc := range cli.Endpoints() {
		st := sc.Addr()
		if st == dead {
			// Requests counts every transmission to it.
			t.Logf("dead endpoint %v: in flight %d", st, sc.InFlight())
		}
	}
	if _, err := mesh.DialService("x", nil); err == nil {
		t.Error("DialService with a nil resolver succeeded")
	}
}

// BenchmarkDialService is the call path of one sequential call: direct
// Dial to one server, DialService with p2c over 16 servers, and
// mesh.DialService (health checking around p2c) over 16. All 0 allocs/op.
func BenchmarkDialService(b *testing.B) {
	eps := echoServers(b, 16)
	eng := engine(b)
	payload := []byte{0x0a, 0x05, 'h', 'e', 'l', 'l', 'o'}
	bench := func(b *testing.B, cli *runtime.Client) {
		defer cli.Close()
		ctx := context.Background()
		buf := make([]byte, 0, 64)
		for range 100 { // SubConns sampled, picker warm
			if _, err := cli.Call(ctx, echo.EchoMethod, payload, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := cli.Call(ctx, echo.EchoMethod, payload, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("dial", func(b *testing.B) {
		cli, err := runtime.Dial("udp", eps[0].Addr.String(), runtime.WithEngine(eng))
		if err != nil {
			b.Fatal(err)
		}
		bench(b, cli)
	})
	b.Run("p2c-16", func(b *testing.B) {
		cli, err := runtime.DialService("zerohop.Echo", runtime.WithEngine(eng), runtime.WithResolver(static.New(eps...)),
			runtime.WithBalancer(balance.P2C()))
		if err != nil {
			b.Fatal(err)
		}
		bench(b, cli)
	})
	b.Run("mesh-16", func(b *testing.B) {
		cli, err := mesh.DialService("zerohop.Echo", static.New(eps...), runtime.WithEngine(eng))
		if err != nil {
			b.Fatal(err)
		}
		bench(b, cli)
	})
}

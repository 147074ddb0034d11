package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/cmd/protoc-gen-zerohop/internal/testsvc"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
	gwir "github.com/zerohop/zerohop/proto"
	zrt "github.com/zerohop/zerohop/runtime"
	"github.com/zerohop/zerohop/typed"
)

func TestMain(m *testing.M) { leak.Main(m) }

// calc implements testsvc.CalcServer.
type calc struct {
	mu   sync.Mutex
	kept map[string]*testsvc.KeepRequest
}

func (c *calc) Add(_ context.Context, r *testsvc.AddRequest) (*testsvc.AddReply, error) {
	return &testsvc.AddReply{Sum: r.A + r.B}, nil
}

// Keep holds on to the decoded request after returning: the bytes must
// not alias the receive frame, which later requests overwrite.
func (c *calc) Keep(_ context.Context, r *testsvc.KeepRequest) (*testsvc.KeepReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept[r.Key] = r
	return &testsvc.KeepReply{Count: uint32(len(c.kept))}, nil
}

func (c *calc) Fetch(_ context.Context, r *testsvc.FetchRequest) (*testsvc.KeepRequest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.kept[r.Key]
	if !ok {
		return nil, typed.Errorf(gwir.StatusApplication, "no key %q", r.Key)
	}
	return k, nil
}

func (c *calc) Fail(_ context.Context, r *testsvc.FailRequest) (*testsvc.AddReply, error) {
	switch r.How {
	case testsvc.FailRequest_APPLICATION:
		return nil, typed.NewError(gwir.Status(r.Status), r.Message)
	case testsvc.FailRequest_DENIED:
		return nil, fmt.Errorf("checking the caller: %w", &zrt.StatusError{Status: gwir.StatusDenied, Message: r.Message})
	case testsvc.FailRequest_PANIC:
		panic(r.Message)
	default:
		return nil, errors.New(r.Message)
	}
}

func (c *calc) Fill(_ context.Context, r *testsvc.FillRequest) (*testsvc.FillReply, error) {
	return &testsvc.FillReply{Data: make([]byte, r.Size)}, nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestGeneratedServiceUring serves the generated Calc on the io_uring
// backend on loopback and calls it through the generated client.
func TestGeneratedServiceUring(t *testing.T) {
	srv, err := zrt.Listen("udp", "127.0.0.1:0", zrt.WithBackend(zrt.BackendUring), zrt.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	startCalc(t, srv)
	c, err := zrt.Dial("udp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exerciseCalc(t, srv, c)
}

// TestGeneratedServiceXSK serves it on the AF_XDP backend in one network
// namespace and calls it from another, across a veth pair.
func TestGeneratedServiceXSK(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, 7000).String()
	var srv *zrt.Server
	if err := link.A.Host.Do(func() (err error) {
		srv, err = zrt.Listen("udp", addr, zrt.WithBackend(zrt.BackendXSK), zrt.WithInterface(link.A.Iface), zrt.WithLogger(quietLogger()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if srv.Backend() != zrt.BackendXSK {
		t.Fatalf("backend %v: %s", srv.Backend(), srv.BackendReason())
	}
	startCalc(t, srv)
	var c *zrt.Client
	if err := link.B.Host.Do(func() (err error) {
		c, err = zrt.Dial("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exerciseCalc(t, srv, c)
}

func startCalc(t *testing.T, srv *zrt.Server) {
	t.Helper()
	testsvc.RegisterCalcServer(srv, &calc{kept: map[string]*testsvc.KeepRequest{}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

func exerciseCalc(t *testing.T, srv *zrt.Server, conn *zrt.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	calc := testsvc.NewCalcClient(conn)

	// A loop method: decoded, computed, encoded.
	sum, err := calc.Add(ctx, &testsvc.AddRequest{A: 40, B: -2})
	if err != nil || sum.Sum != 38 {
		t.Fatalf("Add = %v, %v; want 38", sum, err)
	}
	if n := srv.Stats().Total.Blocking; n != 0 {
		t.Errorf("a loop method went to the worker pool: Blocking = %d", n)
	}

	// A blocking method keeps its decoded requests; 200 more requests
	// through the same frames later, each still holds its own bytes.
	const kept = 20
	for i := range kept {
		r, err := calc.Keep(ctx, &testsvc.KeepRequest{Key: fmt.Sprint("k", i), Value: []byte(strings.Repeat(string(rune('a'+i)), 100))})
		if err != nil || r.Count != uint32(i+1) {
			t.Fatalf("Keep %d = %v, %v", i, r, err)
		}
	}
	if n := srv.Stats().Total.Blocking; n < kept {
		t.Errorf("Blocking = %d after %d calls of a zerohop:blocking method", n, kept)
	}
	for i := range 200 {
		if _, err := calc.Add(ctx, &testsvc.AddRequest{A: int64(i), B: 1 << 40}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range kept {
		r, err := calc.Fetch(ctx, &testsvc.FetchRequest{Key: fmt.Sprint("k", i)})
		if want := strings.Repeat(string(rune('a'+i)), 100); err != nil || string(r.Value) != want || r.Key != fmt.Sprint("k", i) {
			t.Fatalf("Fetch k%d = %v, %v; want the value Keep stored", i, r, err)
		}
	}

	// An application error: a *typed.Error with its status and message,
	// matched by errors.Is and seen by runtime.StatusOf.
	_, err = calc.Fail(ctx, &testsvc.FailRequest{How: testsvc.FailRequest_APPLICATION, Status: 23, Message: "out of coffee"})
	var te *typed.Error
	if !errors.As(err, &te) || te.Status != 23 || te.Message != "out of coffee" {
		t.Fatalf("application error: %v (%T)", err, err)
	}
	if !errors.Is(err, typed.NewError(23, "")) || errors.Is(err, typed.NewError(24, "")) {
		t.Errorf("errors.Is does not match the status of %v", err)
	}
	if st, ok := zrt.StatusOf(err); !ok || st != 23 {
		t.Errorf("runtime.StatusOf(%v) = %v, %v", err, st, ok)
	}
	_, err = calc.Fetch(ctx, &testsvc.FetchRequest{Key: "missing"})
	if !errors.Is(err, typed.NewError(gwir.StatusApplication, "")) || !strings.Contains(err.Error(), `no key "missing"`) {
		t.Errorf("Fetch of a missing key: %v", err)
	}

	// Protocol statuses stay *runtime.StatusError.
	for _, c := range []struct {
		req  *testsvc.FailRequest
		want gwir.Status
		msg  string
	}{
		{&testsvc.FailRequest{How: testsvc.FailRequest_PLAIN, Message: "disk on fire"}, gwir.StatusInternal, "disk on fire"},
		{&testsvc.FailRequest{How: testsvc.FailRequest_DENIED, Message: "who are you"}, gwir.StatusDenied, "who are you"},
		{&testsvc.FailRequest{How: testsvc.FailRequest_PANIC, Message: "boom"}, gwir.StatusInternal, ""},
	} {
		_, err := calc.Fail(ctx, c.req)
		var se *zrt.StatusError
		if !errors.As(err, &se) || se.Status != c.want || !strings.Contains(se.Message, c.msg) || errors.As(err, &te) {
			t.Errorf("Fail %v: %v (%T), want status %v", c.req.How, err, err, c.want)
		}
	}

	// A reply larger than a datagram is TOO_LARGE, never truncated.
	if _, err := calc.Fill(ctx, &testsvc.FillRequest{Size: 100_000}); !errors.Is(err, &zrt.StatusError{Status: gwir.StatusTooLarge}) {
		t.Errorf("Fill 100000: %v, want TOO_LARGE", err)
	}
	if r, err := calc.Fill(ctx, &testsvc.FillRequest{Size: 1000}); err != nil || len(r.Data) != 1000 {
		t.Errorf("Fill 1000: %d bytes, %v", len(r.GetData()), err)
	}

	// A payload that is not the method's message is BAD_FRAME (field 1
	// of AddRequest is a varint; send it length-delimited, truncated).
	if _, err := conn.Call(ctx, testsvc.CalcAddMethod, []byte{0x0a, 0x05, 'x'}, nil); !errors.Is(err, &zrt.StatusError{Status: gwir.StatusBadFrame}) {
		t.Errorf("undecodable payload: %v, want BAD_FRAME", err)
	}
}

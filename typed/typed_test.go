package typed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/leak"
	gwir "github.com/zerohop/zerohop/proto"
	zrt "github.com/zerohop/zerohop/runtime"
	"github.com/zerohop/zerohop/typed"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) { leak.Main(m) }

func TestErrorMatching(t *testing.T) {
	notFound := typed.NewError(gwir.StatusApplication, "")
	err := fmt.Errorf("get: %w", typed.Errorf(gwir.StatusApplication, "no key %q", "k"))
	for _, c := range []struct {
		target error
		want   bool
	}{
		{notFound, true},
		{typed.NewError(gwir.StatusApplication, `no key "k"`), true},
		{typed.NewError(gwir.StatusApplication, "other text"), false},
		{typed.NewError(gwir.StatusApplication+1, ""), false},
		{&zrt.StatusError{Status: gwir.StatusApplication}, true}, // through Unwrap
		{&zrt.StatusError{Status: gwir.StatusInternal}, false},
	} {
		if got := errors.Is(err, c.target); got != c.want {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", err, c.target, got, c.want)
		}
	}
	if st, ok := zrt.StatusOf(err); !ok || st != gwir.StatusApplication {
		t.Errorf("runtime.StatusOf = %v, %v", st, ok)
	}
	if got := err.Error(); got != `get: status APP(16): no key "k"` {
		t.Errorf("Error() = %q", got)
	}
}

// echoServer serves "t.T/Echo" twice over: typed (StringValue in and out)
// and raw, for the benchmarks' comparison.
func echoServer(tb testing.TB) *zrt.Client {
	tb.Helper()
	srv, err := zrt.Listen("udp", "127.0.0.1:0", zrt.WithBackend(zrt.BackendUring), zrt.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		tb.Fatal(err)
	}
	srv.Handle("t.T/Typed", typed.Handler(func(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if in.Value == "" {
			return nil, typed.NewError(17, "empty")
		}
		return in, nil
	}))
	srv.Handle("t.T/Raw", func(req *zrt.Request, resp *zrt.Response) { resp.Write(req.Payload()) })
	srv.Handle("t.T/Garbage", func(req *zrt.Request, resp *zrt.Response) { resp.Write([]byte{0x0a, 0x05, 'x'}) })
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	c, err := zrt.Dial("udp", srv.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); srv.Shutdown(context.Background()) })
	return c
}

func TestInvoke(t *testing.T) {
	c := echoServer(t)
	ctx := context.Background()
	out := new(wrapperspb.StringValue)
	if err := typed.Invoke(ctx, c, "t.T/Typed", wrapperspb.String("hi"), out); err != nil || out.Value != "hi" {
		t.Fatalf("Invoke = %q, %v", out.Value, err)
	}
	var te *typed.Error
	if err := typed.Invoke(ctx, c, "t.T/Typed", wrapperspb.String(""), out); !errors.As(err, &te) || te.Status != 17 || te.Message != "empty" {
		t.Errorf("application error: %v (%T)", err, err)
	}
	if err := typed.Invoke(ctx, c, "t.T/Nope", wrapperspb.String("x"), out); !errors.Is(err, &zrt.StatusError{Status: gwir.StatusUnknownMethod}) || errors.As(err, &te) {
		t.Errorf("unknown method: %v (%T), want a *runtime.StatusError", err, err)
	}
	// A reply that does not decode: the error names the method and type.
	if err := typed.Invoke(ctx, c, "t.T/Garbage", wrapperspb.String("x"), out); err == nil ||
		!strings.Contains(err.Error(), "t.T/Garbage: decoding the reply as google.protobuf.StringValue") {
		t.Errorf("truncated reply: %v", err)
	}
}

// The typed layer's cost per call against the raw API, both server and
// client in this process: allocations are protobuf's (see the package doc).
func BenchmarkCallTyped(b *testing.B) {
	c := echoServer(b)
	in, out := wrapperspb.String("hello"), new(wrapperspb.StringValue)
	b.ReportAllocs()
	for b.Loop() {
		if err := typed.Invoke(context.Background(), c, "t.T/Typed", in, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCallRaw(b *testing.B) {
	c := echoServer(b)
	payload, buf := []byte("\x0a\x05hello"), make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(context.Background(), "t.T/Raw", payload, buf); err != nil {
			b.Fatal(err)
		}
	}
}

package policy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"

	_ "github.com/zerohop/zerohop/runtime/xdp" // the AF_XDP backend
)

func TestMain(m *testing.M) { leak.Main(m) }

// Methods of the test servers: the echo service on the loop, and a
// blocking method whose handler sleeps for about a millisecond (a call to
// a slow backend).
const (
	slowMethod = "test.Slow/Work"
	otherSlow  = "test.Slow/Other"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer runs a runtime server with pol's chains on addr, through do
// (nil: in this namespace), with the echo methods and the slow ones.
func startServer(t testing.TB, do func(func() error) error, addr string, pol *policy.Server, opts ...runtime.Option) *runtime.Server {
	t.Helper()
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	opts = append([]runtime.Option{runtime.WithLogger(quietLogger())}, opts...)
	if pol != nil {
		opts = append(opts, pol.Options()...)
	}
	var srv *runtime.Server
	if err := do(func() (err error) {
		srv, err = runtime.Listen("udp", addr, opts...)
		return err
	}); err != nil {
		t.Fatalf("Listen %s: %v", addr, err)
	}
	echo.Register(srv)
	slow := func(req *runtime.Request, resp *runtime.Response) {
		time.Sleep(time.Millisecond)
		resp.Write(req.Payload())
	}
	srv.HandleBlocking(slowMethod, slow)
	srv.HandleBlocking(otherSlow, slow)
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv
}

// client is a kernel UDP socket speaking GWIR: the independent peer.
type client struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

// dial opens a kernel UDP client to to, through do (nil: here), bound to
// from when valid.
func dial(t testing.TB, do func(func() error) error, from netip.Addr, to netip.AddrPort) *client {
	t.Helper()
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	var conn *net.UDPConn
	if err := do(func() (err error) {
		var laddr *net.UDPAddr
		if from.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		}
		conn, err = net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, buf: make([]byte, 65536)}
}

// request encodes a request; caller, when not empty, goes in the CALLER
// tag, and every request speaks EXT (ATTEMPT 0) so replies carry
// RETRY_AFTER.
func request(id uint64, method, caller string, payload []byte) proto.Frame {
	var x proto.ExtBuilder
	x.SetAttempt(0)
	if caller != "" {
		x.SetCaller([]byte(caller))
	}
	f, err := proto.EncodeRequestExt(make([]byte, 512), id, proto.MethodID(method), 0, &x, payload)
	if err != nil {
		panic(err)
	}
	return f
}

func (c *client) send(f proto.Frame) {
	c.t.Helper()
	if _, err := c.conn.Write(f); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next reply (a copy), or nil after timeout.
func (c *client) recv(timeout time.Duration) proto.Frame {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.conn.Read(c.buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		c.t.Fatal(err)
	}
	f, err := proto.Parse(append([]byte(nil), c.buf[:n]...))
	if err != nil {
		c.t.Fatalf("reply does not parse: %v", err)
	}
	return f
}

// call sends one request and waits for its reply, at most bound (a bound
// against hangs; nil when none came).
func (c *client) call(id uint64, method, caller string, bound time.Duration) proto.Frame {
	c.t.Helper()
	c.send(request(id, method, caller, []byte{0x08, 0x01}))
	end := time.Now().Add(bound)
	for time.Now().Before(end) {
		f := c.recv(time.Until(end))
		if f == nil {
			return nil
		}
		if f.RequestID() == id {
			return f
		}
	}
	return nil
}

// reply is one answer seen by a collector, with when it came.
type reply struct {
	status proto.Status
	retry  time.Duration
	hasRA  bool
	at     time.Time
	msg    string
}

// collector reads replies on c's socket in the background until stopped.
type collector struct {
	mu      sync.Mutex
	replies map[uint64]reply
	done    chan struct{}
	c       *client
}

func collect(c *client) *collector {
	k := &collector{replies: map[uint64]reply{}, done: make(chan struct{}), c: c}
	go func() {
		defer close(k.done)
		buf := make([]byte, 65536)
		for {
			c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.conn.Read(buf)
			if err != nil {
				return // closed, or quiet for 2 s: the load is over
			}
			f, err := proto.Parse(buf[:n])
			if err != nil {
				continue
			}
			ra, has := f.RetryAfter()
			r := reply{status: f.Status(), retry: ra, hasRA: has, at: time.Now()}
			if f.Status() != proto.StatusOK {
				r.msg = string(f.ErrorMessage())
			}
			k.mu.Lock()
			k.replies[f.RequestID()] = r
			k.mu.Unlock()
		}
	}()
	return k
}

// wait waits until want replies came or the socket went quiet.
func (k *collector) wait(want int) map[uint64]reply {
	for {
		k.mu.Lock()
		n := len(k.replies)
		k.mu.Unlock()
		if n >= want {
			break
		}
		select {
		case <-k.done:
			k.mu.Lock()
			defer k.mu.Unlock()
			return k.replies
		case <-time.After(5 * time.Millisecond):
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.replies
}

// writePolicy writes text to path the way editors do (write, rename).
func writePolicy(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tempPolicy(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, text)
	return path
}

func newPolicy(t testing.TB, cfg policy.ServerConfig) *policy.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	p, err := policy.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loopback() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:0") }

func mustParse(t testing.TB, text string) policy.Document {
	t.Helper()
	doc, err := policy.ParseDocument("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// netipAddr parses an address, "" giving the zero (unbound) one.
func netipAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/runtime"
)

// TestStatReport: /stat is the JSON of every source, with the method
// counts, loops, XDP and client sections, and latency buckets from which
// Interval recovers the quantiles of just the values added in between.
func TestStatReport(t *testing.T) {
	ts := startServer(t)
	_, ep := startAdmin(t, AdminConfig{}, Sources{Server: ts.srv, XDP: fakeXDP{}, Iface: "eth9", Client: fakeClient{}})
	c := newRawClient(t, ts.srv.Addr())
	for i := 0; i < 10; i++ {
		c.call(mEcho, nil, nil)
	}
	first := jsonStat(t, ep)
	for i := 0; i < 7; i++ {
		c.call(mEcho, nil, nil)
	}
	rep := jsonStat(t, ep)
	s := rep.Server
	if s == nil || s.Addr != ts.srv.Addr().String() || s.Backend != "uring" || s.Draining || len(s.Loops) != 1 {
		t.Fatalf("server section %+v", s)
	}
	var echo, echo0 *MethodReport
	for i := range s.Methods {
		if s.Methods[i].Method == mEcho {
			echo = &s.Methods[i]
		}
	}
	for i := range first.Server.Methods {
		if first.Server.Methods[i].Method == mEcho {
			echo0 = &first.Server.Methods[i]
		}
	}
	if echo == nil || echo.Statuses["OK"] != 17 || echo.Latency.Count != 17 || echo.Requests != 17 {
		t.Fatalf("echo method %+v", echo)
	}
	var inBuckets uint64
	for _, b := range echo.Latency.Buckets {
		inBuckets += b[1]
	}
	if inBuckets != 17 {
		t.Errorf("latency buckets hold %d values, want 17", inBuckets)
	}
	n, q := Interval(&echo0.Latency, &echo.Latency)
	if n != 7 || q(0.99) <= 0 || q(0.99) > time.Second || q(0.5) > q(0.99) {
		t.Errorf("interval: %d values, p50 %v p99 %v; want 7", n, q(0.5), q(0.99))
	}
	if s.Total.Served["udp"] != 17 || s.Loops[0].RX != 17 {
		t.Errorf("served %v, rx %d", s.Total.Served, s.Loops[0].RX)
	}
	if x := rep.XDP; x == nil || x.Iface != "eth9" || x.Counters.Redirected != 60 || len(x.Services) != 2 || x.Services[0].Addr != "any" ||
		len(x.ACL) != 2 || len(x.Slots) != 2 {
		t.Errorf("xdp section %+v", rep.XDP)
	}
	if cl := rep.Client; cl == nil || len(cl.Methods) != 1 || cl.Methods[0].Statuses["OK"] != 90 || cl.Methods[0].Failures[FailureNoReply] != 2 ||
		len(cl.Endpoints) != 2 || cl.Endpoints[1].State != "ejected" {
		t.Errorf("client section %+v", rep.Client)
	}
}

// TestIntervalQuantiles checks Interval against values placed in known
// runtime buckets.
func TestIntervalQuantiles(t *testing.T) {
	prev := LatencyReport{Buckets: [][2]uint64{{1024, 5}, {2048, 5}}}
	cur := LatencyReport{Buckets: [][2]uint64{{1024, 5}, {2048, 95}, {65536, 5}}}
	n, q := Interval(&prev, &cur)
	if n != 95 || q(0.5) != 2048 || q(0.99) != 65536 || q(0) != 2048 {
		t.Errorf("n %d p0 %v p50 %v p99 %v", n, q(0), q(0.5), q(0.99))
	}
	if n, q := Interval(&cur, &cur); n != 0 || q(0.99) != 0 {
		t.Errorf("empty interval: %d, %v", n, q(0.99))
	}
}

// TestLatencyReportBoundaries: the report's bucket bounds are the
// runtime's, so its counts agree with a real histogram exactly.
func TestLatencyReportBoundaries(t *testing.T) {
	for b := 1; b < histBuckets; b++ {
		if histBucketLow(b) <= histBucketLow(b-1) {
			t.Fatalf("bounds not increasing at %d: %d after %d", b, histBucketLow(b), histBucketLow(b-1))
		}
	}
	d := fixedDist{n: 4, d: 3 * time.Microsecond}
	r := latencyReport(d)
	if len(r.Buckets) != 1 || r.Buckets[0][1] != 4 || time.Duration(r.Buckets[0][0]) > 3*time.Microsecond ||
		float64(r.Buckets[0][0]) < 0.875*3000 {
		t.Errorf("buckets %v for 4 values of 3µs", r.Buckets)
	}
}

// TestAdminSocketDiscovery: the admin socket is in /proc/net/unix under
// its documented name, and FindSocket picks it when it is the only one —
// in a fresh network namespace, so other tests' sockets do not count.
func TestAdminSocketDiscovery(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	var srv *runtime.Server
	if err := link.A.Host.Do(func() (err error) {
		srv, err = runtime.Listen("udp", netip.AddrPortFrom(link.A.Addr4, 7300).String(), runtime.WithBackend(runtime.BackendUring),
			runtime.WithLogger(discardLogger()))
		if err != nil {
			return err
		}
		if _, err := FindSocket(); err != ErrNoAdmin {
			return fmt.Errorf("before the admin starts: FindSocket %v, want ErrNoAdmin", err)
		}
		a, err := NewAdmin(AdminConfig{}, Sources{Server: srv})
		if err != nil {
			return err
		}
		if err := a.Start(); err != nil {
			return err
		}
		t.Cleanup(func() { a.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	want := SocketName(netip.AddrPortFrom(link.A.Addr4, 7300).String())
	var got string
	var err error
	link.A.Host.Do(func() error { got, err = FindSocket(); return nil })
	if err != nil || got != want {
		t.Fatalf("FindSocket in the server's namespace: %q, %v; want %q", got, err, want)
	}
	// A second server's socket makes the choice ambiguous: FindSocket
	// names both instead of guessing.
	link.A.Host.Do(func() error {
		l, lerr := net.Listen("unix", SocketName("other:1"))
		if lerr != nil {
			return lerr
		}
		defer l.Close()
		_, err = FindSocket()
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--admin") {
		t.Errorf("two sockets: %v", err)
	}
	// The other namespace sees none of them.
	link.B.Host.Do(func() error { _, err = FindSocket(); return nil })
	if err != ErrNoAdmin {
		t.Errorf("the peer namespace: %v, want ErrNoAdmin", err)
	}
}

func TestParseProcNetUnix(t *testing.T) {
	text := `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 1234 @zerohop/admin/10.0.0.1:9000
0000000000000000: 00000003 00000000 00000000 0001 03 1235 @zerohop/admin/10.0.0.1:9000
0000000000000000: 00000002 00000000 00010000 0001 01 1236 /run/other.sock
0000000000000000: 00000002 00000000 00010000 0001 01 1237 @zerohop/admin/[::1]:7000
0000000000000000: 00000002 00000000 00000000 0002 01 1238
`
	got, err := parseProcNetUnix(strings.NewReader(text))
	if err != nil || strings.Join(got, " ") != "@zerohop/admin/10.0.0.1:9000 @zerohop/admin/[::1]:7000" {
		t.Errorf("%q %v", got, err)
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]Endpoint{
		"127.0.0.1:9090": {"tcp", "127.0.0.1:9090"}, "[::1]:9": {"tcp", "[::1]:9"}, "unix:/run/a.sock": {"unix", "/run/a.sock"},
		"unix:@zerohop/admin/x": {"unix", "@zerohop/admin/x"}, "@name": {"unix", "@name"},
	} {
		if got, err := ParseEndpoint(in); err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "nonsense", "unix:"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
}

const peerChildEnv = "ZEROHOP_TELEMETRY_PEER_CHILD"

func init() {
	// Re-executed as another user by TestAdminRefusesOtherUsers: try the
	// socket and report what happened on stdout.
	if name := os.Getenv(peerChildEnv); name != "" {
		c := Endpoint{"unix", name}.HTTPClient(3 * time.Second)
		resp, err := c.Get("http://zerohop/healthz")
		if err != nil {
			fmt.Println("refused:", err)
			os.Exit(0)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Println("served:", resp.StatusCode, strings.TrimSpace(string(body)))
		os.Exit(0)
	}
}

// TestAdminRefusesOtherUsers: the abstract socket has no file
// permissions, so the endpoint checks SO_PEERCRED: a process of another
// user (nobody) is refused, root is served.
func TestAdminRefusesOtherUsers(t *testing.T) {
	topo.RequireRoot(t)
	logs := &syncWriter{w: &strings.Builder{}}
	ts := startServer(t)
	name := fmt.Sprintf("@zerohop/admin/peercred-test-%d", os.Getpid())
	_, ep := startAdmin(t, AdminConfig{Socket: name, Logger: slog.New(slog.NewTextHandler(logs, nil))}, Sources{Server: ts.srv})
	if code, _ := get(t, ep, "/healthz"); code != http.StatusOK {
		t.Fatalf("root: /healthz %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exe := copyExecutable(t)
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Dir = filepath.Dir(exe)
	cmd.Env = append(os.Environ(), peerChildEnv+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "refused:") {
		t.Errorf("another user's request: %q, want it refused", out)
	}
	if !strings.Contains(logs.String(), "uid=65534") {
		t.Errorf("no warning naming the refused uid:\n%s", logs.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// copyExecutable copies the test binary where another user may run it.
func copyExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "zh-peercred-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "telemetry.test")
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/telemetry"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// tmux drives a private tmux server (its own socket name), killed in
// cleanup.
type tmux struct {
	t      *testing.T
	socket string
}

// newTmux starts nothing yet: the tmux server of name starts with its
// first session. Each session gets a server of its own (name is part of
// the socket), because a server whose last session ended exits, and a
// new session started meanwhile on the same socket fails with "server
// exited unexpectedly".
func newTmux(t *testing.T, name string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		topo.SkipMissing(t, "tmux not installed (Debian package tmux; scripts/test installs it)")
	}
	x := &tmux{t: t, socket: fmt.Sprintf("zh-top-test-%d-%s", os.Getpid(), name)}
	t.Cleanup(func() { exec.Command("tmux", "-L", x.socket, "kill-server").Run() })
	return x
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tmux", append([]string{"-L", x.socket}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// waitPane polls the pane (bounded) until cond holds, returning the last
// capture.
func (x *tmux) waitPane(session string, cond func(string) bool) (string, bool) {
	var pane string
	for i := 0; i < 100; i++ { // ≤ 20 s
		pane = x.run("capture-pane", "-p", "-t", session)
		if cond(pane) {
			return pane, true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return pane, false
}

// TestTopUnderTmux runs `zerohop top` in a real terminal (tmux), against a
// server's admin endpoint while calls run: the live view shows the
// method's rate and p99, redraws, and q (and in a second session Ctrl-C)
// ends it with status 0 and the terminal given back.
func TestTopUnderTmux(t *testing.T) {
	srv, err := runtime.Listen("udp", "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring), runtime.WithLogger(discardLog()))
	if err != nil {
		t.Fatal(err)
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	name := fmt.Sprintf("@zerohop/admin/top-test-%d", os.Getpid())
	adm, err := telemetry.NewAdmin(telemetry.AdminConfig{Socket: name}, telemetry.Sources{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Start(); err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	// Load: echo calls from a kernel UDP socket until the test is done.
	ctx, stop := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.Addr()))
		if err != nil {
			return
		}
		defer conn.Close()
		out, in := make([]byte, 256), make([]byte, 256)
		for id := uint64(1); ctx.Err() == nil && id < 5_000_000; id++ { // bounded
			f, _ := proto.EncodeRequest(out, id, proto.MethodID(echo.EchoMethod), 0, []byte{8, 1})
			conn.Write(f)
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			conn.Read(in)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	defer func() { stop(); <-loadDone }()

	for _, quit := range []struct{ session, key string }{{"top-q", "q"}, {"top-ctrl-c", "C-c"}} {
		// top's exit status goes to a file through a shell in the pane:
		// tmux's own #{pane_dead_status} sometimes stayed unset for
		// seconds after the pane died on a loaded machine.
		x := newTmux(t, quit.session)
		statusFile := filepath.Join(t.TempDir(), quit.session+".status")
		x.run("new-session", "-d", "-s", quit.session, "-x", "160", "-y", "40",
			"env", benchChildEnv+"=1", "sh", "-c", `"$0" top --admin "$1"; echo $? > "$2.tmp" && mv "$2.tmp" "$2"`,
			os.Args[0], "unix:"+name, statusFile)
		x.run("set-option", "-t", quit.session, "remain-on-exit", "on")
		pane, ok := x.waitPane(quit.session, func(p string) bool {
			return strings.Contains(p, "zerohop top — "+srv.Addr().String()) && methodRateShown(p, echo.EchoMethod)
		})
		if !ok {
			t.Fatalf("%s: top never showed a rate for %s:\n%s", quit.session, echo.EchoMethod, pane)
		}
		for _, want := range []string{"LOOP", "REQ/s", "p99", "DROPS", "q: quit"} {
			if !strings.Contains(pane, want) {
				t.Errorf("%s: view lacks %q:\n%s", quit.session, want, pane)
			}
		}
		// It redraws: the clock line changes within a few intervals.
		first := strings.SplitN(pane, "\n", 2)[0]
		if pane2, ok := x.waitPane(quit.session, func(p string) bool { return strings.SplitN(p, "\n", 2)[0] != first }); !ok {
			t.Errorf("%s: the view did not refresh:\n%s", quit.session, pane2)
		}
		x.run("send-keys", "-t", quit.session, quit.key)
		status := "(none: top did not exit)"
		for i := 0; i < 100; i++ { // ≤ 10 s
			if b, err := os.ReadFile(statusFile); err == nil {
				status = strings.TrimSpace(string(b))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if status != "0" {
			t.Errorf("%s: after %s, exit status %s, want 0", quit.session, quit.key, status)
		}
		// The alternate screen is gone: the pane shows the normal screen
		// again, without top's table.
		if after := x.run("capture-pane", "-p", "-t", quit.session); strings.Contains(after, "REQ/s") {
			t.Errorf("%s: top's screen left behind:\n%s", quit.session, after)
		}
		x.run("kill-session", "-t", quit.session)
	}
}

// methodRateShown reports whether the pane has method's row with a
// non-zero request rate.
func methodRateShown(pane, method string) bool {
	for _, l := range strings.Split(pane, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == method && f[1] != "0" {
			return true
		}
	}
	return false
}

// TestTopOnce: without a terminal, --once prints one view over one
// interval, with the rates of the calls made meanwhile.
func TestTopOnce(t *testing.T) {
	srv, err := runtime.Listen("udp", "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring), runtime.WithLogger(discardLog()))
	if err != nil {
		t.Fatal(err)
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	name := fmt.Sprintf("@zerohop/admin/top-once-%d", os.Getpid())
	adm, err := telemetry.NewAdmin(telemetry.AdminConfig{Socket: name}, telemetry.Sources{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Start(); err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	done := make(chan struct{})
	go func() { // 50 calls during the interval
		defer close(done)
		callLoopback(t, srv.Addr(), 50, 5*time.Millisecond)
	}()
	r, w, _ := os.Pipe()
	defer r.Close()
	code := top(os.Stdin, w, os.Stderr, []string{"--admin", "unix:" + name, "--once", "--interval", "600ms"})
	w.Close()
	<-done
	buf := make([]byte, 64<<10)
	n, _ := r.Read(buf)
	out := string(buf[:n])
	if code != 0 || !methodRateShown(out, echo.EchoMethod) || !strings.Contains(out, "LOOP") {
		t.Errorf("top --once exited %d:\n%s", code, out)
	}
}

func callLoopback(t *testing.T, addr netip.AddrPort, n int, gap time.Duration) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	out, in := make([]byte, 256), make([]byte, 256)
	for i := 0; i < n; i++ {
		f, _ := proto.EncodeRequest(out, uint64(i+1), proto.MethodID(echo.EchoMethod), 0, []byte{8, 1})
		conn.Write(f)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		conn.Read(in)
		time.Sleep(gap)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestTopAndStatShowClientEndpoints: the client's endpoints show their
// transport counters as rates (top) and totals (stat); what the source
// does not cover (state, breaker, per-method calls) shows as "-", not
// as a zero that would look measured.
func TestTopAndStatShowClientEndpoints(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	endpoint := func(requests, retx uint64) telemetry.EndpointReport {
		return telemetry.EndpointReport{Service: "pkg.Users", Addr: "10.0.0.1:9000", InFlight: 2, Requests: requests,
			Retransmits: retx, Replies: requests, SRTTNs: int64(250 * time.Microsecond)}
	}
	cov := telemetry.ClientCoverage{Transport: true}
	prev := telemetry.StatReport{Time: at, Client: &telemetry.ClientReport{Coverage: cov, Endpoints: []telemetry.EndpointReport{endpoint(100, 1)}}}
	cur := telemetry.StatReport{Time: at.Add(2 * time.Second), Client: &telemetry.ClientReport{Coverage: cov, Endpoints: []telemetry.EndpointReport{endpoint(160, 5)}}}
	var row string
	for _, l := range renderTop(&prev, &cur, 0, "") {
		if strings.Contains(l, "METHOD") && strings.Contains(l, "CLIENT") {
			t.Errorf("top shows a client method header without method data: %q", l)
		}
		if strings.HasPrefix(l, "pkg.Users") {
			row = l
		}
	}
	// 60 requests and 4 retransmits over 2 s.
	if f := strings.Fields(row); len(f) != 8 || f[1] != "10.0.0.1:9000" || f[2] != "-" || f[3] != "-" || f[4] != "2" ||
		f[5] != "30" || f[6] != "2" || f[7] != "250.0µs" {
		t.Errorf("top endpoint row %q, want state and breaker -, 2 in flight, 30 req/s, 2 retx/s, srtt 250.0µs", row)
	}
	var out strings.Builder
	printStat(&out, &cur)
	var statRow string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "10.0.0.1:9000") {
			statRow = l
		}
	}
	if f := strings.Fields(statRow); len(f) != 9 || f[2] != "-" || f[3] != "-" || f[4] != "2" || f[5] != "160" || f[6] != "5" || f[8] != "250µs" {
		t.Errorf("stat endpoint row %q, want state and breaker -, 2 in flight, 160 requests, 5 retransmits, srtt 250µs", statRow)
	}
}

// slowAdmin is an admin endpoint whose /stat never answers (until the
// test ends): a server that hangs, or one behind a dead link.
func slowAdmin(t *testing.T) telemetry.Endpoint {
	t.Helper()
	gone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-gone:
		}
	}))
	t.Cleanup(func() { close(gone); srv.Close() })
	return telemetry.Endpoint{Network: "tcp", Address: srv.Listener.Addr().String()}
}

// topLoopRun runs the live loop on m in the background with keys and
// ticks the test sends; its views are kept for the test to read.
type topLoopRun struct {
	keys  chan byte
	tick  chan time.Time
	ended chan struct{}
	views syncBuffer // every drawn view, one after the other
}

func startTopLoop(t *testing.T, m *topModel) *topLoopRun {
	r := &topLoopRun{keys: make(chan byte), tick: make(chan time.Time), ended: make(chan struct{})}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); <-r.ended })
	go func() {
		defer close(r.ended)
		runTopLoop(m, r.keys, done, r.tick, func() { io.WriteString(&r.views, strings.Join(m.view(0), "\n")+"\n--\n") })
	}()
	return r
}

// send hands the loop a key or tick; false if it did not take it within
// 10 s (it is stuck, or ended).
func (r *topLoopRun) send(k byte, tick bool) bool {
	timeout := time.After(10 * time.Second)
	if tick {
		select {
		case r.tick <- time.Now():
			return true
		case <-timeout:
			return false
		}
	}
	select {
	case r.keys <- k:
		return true
	case <-timeout:
		return false
	}
}

// While a /stat fetch hangs (here for a minute: the client's timeout),
// ticks and keys are still handled: a second tick says what top waits
// for, and q quits at once.
func TestTopQuitsWhileTheServerHangs(t *testing.T) {
	ep := slowAdmin(t)
	c := ep.HTTPClient(time.Minute)
	defer c.CloseIdleConnections()
	m := newTopModel(telemetry.StatReport{Time: time.Now()}, ep.String(), func() (telemetry.StatReport, error) { return fetchStat(c, ep) })
	r := startTopLoop(t, m)
	if !r.send(0, true) {
		t.Fatal("the loop did not take the first tick")
	}
	if !r.send(0, true) {
		t.Fatal("the loop did not take a tick while /stat was being fetched: it waits for the fetch")
	}
	if !r.send('q', false) {
		t.Fatal("the loop did not take q while /stat was being fetched: it waits for the fetch")
	}
	select {
	case <-r.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the loop")
	}
	if views := r.views.String(); !strings.Contains(views, "waiting for "+ep.String()+" to answer /stat") {
		t.Errorf("no view said top waits for the server:\n%s", views)
	}
}

// A server that does not answer within the client's timeout shows as an
// error line, and the view goes on (q still quits).
func TestTopShowsAServerThatDoesNotAnswer(t *testing.T) {
	ep := slowAdmin(t)
	c := ep.HTTPClient(200 * time.Millisecond)
	defer c.CloseIdleConnections()
	m := newTopModel(telemetry.StatReport{Time: time.Now()}, ep.String(), func() (telemetry.StatReport, error) { return fetchStat(c, ep) })
	r := startTopLoop(t, m)
	if !r.send(0, true) {
		t.Fatal("the loop did not take the tick")
	}
	want := "error: admin endpoint " + ep.String()
	for i := 0; !strings.Contains(r.views.String(), want); i++ {
		if i == 1000 { // 10 s
			t.Fatalf("no error line %q within 10 s of a timeout of 200ms:\n%s", want, r.views.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !r.send('q', false) {
		t.Fatal("the loop did not take q after the error")
	}
	select {
	case <-r.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the loop")
	}
}

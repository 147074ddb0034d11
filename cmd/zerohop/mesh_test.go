package main

// The mesh end to end: `zerohop serve` processes in namespaces of their
// own registering in etcd (Debian's etcd binary, or an embedded one where
// the test stops and restarts it), and clients in another namespace
// calling by service name through DialService with health checking
// around p2c. Figures (how fast an endpoint was ejected, dropped, picked)
// are logged, not asserted.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/balance"
	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/mesh/discovery/etcd/etcdtest"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/mesh/health"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

const meshService = "zerohop.Echo"

// meshEnv is a star of namespaces: host 0 runs etcd and the clients,
// hosts 1..n one `zerohop serve` each at 10.99.i.2:7000. Each server host
// routes 10.99.0.0/16 to host 0, so all reach etcd at 10.99.1.1.
type meshEnv struct {
	t       *testing.T
	tp      *topo.Topology
	etcdURL string
	eng     *runtime.Engine
	logs    *syncBuffer // the client engine's and the health checker's
}

func newMeshEnv(t *testing.T, servers int) *meshEnv {
	topo.RequireRoot(t)
	etcdtest.RequireBinary(t)
	tp := topo.New(t, topo.Config{Hosts: servers + 1})
	m := &meshEnv{t: t, tp: tp, logs: &syncBuffer{}}
	for i, l := range tp.Links {
		if out, err := l.B.Host.Command(t.Context(), "ip", "route", "add", "10.99.0.0/16", "via", l.A.Addr4.String()).CombinedOutput(); err != nil {
			t.Fatalf("route in server host %d: %v: %s", i+1, err, out)
		}
	}
	p := etcdtest.StartBinary(t, etcdtest.BinaryConfig{Host: tp.Links[0].A.Addr4.String(),
		Prefix: []string{"ip", "netns", "exec", tp.Hosts[0].Name}, Enter: tp.Hosts[0].Do})
	m.etcdURL = p.Endpoint
	log := slog.New(slog.NewTextHandler(m.logs, nil))
	if err := tp.Hosts[0].Do(func() error {
		var err error
		m.eng, err = runtime.NewEngine(runtime.WithEngineLogger(log))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.eng.Close()
		if t.Failed() {
			t.Logf("client logs:\n%s", m.logs.String())
		}
	})
	return m
}

func (m *meshEnv) addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(m.tp.Links[i-1].B.Addr4, 7000)
}

// serve starts `zerohop serve` in server host i, registered in etcd.
func (m *meshEnv) serve(i int, extra ...string) *serveProc {
	m.t.Helper()
	args := append([]string{"--addr", m.addr(i).String(), "--backend", "uring", "--busy-poll", "0",
		"--service", meshService, "--etcd", m.etcdURL}, extra...)
	return startServe(m.t, m.tp.Links[i-1].B.Host, fmt.Sprintf("server %d", i), false, args...)
}

// etcdClient is a client of etcd whose connections are made in host 0.
func (m *meshEnv) etcdClient() *clientv3.Client {
	m.t.Helper()
	cfg := etcd.ClientConfig(m.etcdURL)
	cfg.Logger = zap.NewNop()
	h := m.tp.Hosts[0]
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := h.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}))
	cli, err := clientv3.New(cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { cli.Close() })
	return cli
}

// dial returns a client of the service through r, with health checking
// around p2c, and the health builder.
func (m *meshEnv) dial(r runtime.ResolverBuilder) (*runtime.Client, *health.Builder) {
	m.t.Helper()
	hb, err := health.Wrap(balance.P2C(), health.Config{Logger: slog.New(slog.NewTextHandler(m.logs, nil))})
	if err != nil {
		m.t.Fatal(err)
	}
	// The calls' 1 s deadlines bound them, not a count of copies: with the
	// default 8 copies at a 2 ms timeout floor, a half-second stall of
	// this shared 2-core machine failed a few calls early in one run of
	// many, on a healthy server.
	c, err := runtime.DialService(meshService, runtime.WithEngine(m.eng), runtime.WithResolver(r), runtime.WithBalancer(hb),
		runtime.WithRetransmission(20*time.Millisecond, time.Second, 0))
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c, hb
}

func (m *meshEnv) etcdResolver() *etcd.Builder {
	b, err := etcd.NewBuilder(m.etcdClient())
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

// zerohop runs `zerohop args…` in host 0.
func (m *meshEnv) zerohop(args ...string) (int, string, string) {
	cmd := m.tp.Hosts[0].Command(m.t.Context(), os.Args[0], args...)
	return runCmd(m.t, cmd)
}

func runCmd(t *testing.T, cmd *exec.Cmd) (int, string, string) {
	t.Helper()
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// waitEndpoints waits until the client holds exactly want (in any order)
// and returns how long that took.
func waitEndpoints(t *testing.T, c *runtime.Client, timeout time.Duration, want ...netip.AddrPort) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := map[netip.AddrPort]bool{}
		for _, sc := range c.Endpoints() {
			got[sc.Addr()] = true
		}
		same := len(got) == len(want)
		for _, w := range want {
			same = same && got[w]
		}
		if same {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v the client holds %v, want %v", timeout, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// meshLoad keeps callers calling with a 1 s deadline each until stopped.
type meshLoad struct {
	calls, failed atomic.Int64
	firstErr      atomic.Pointer[error]
	stop          chan struct{}
	wg            sync.WaitGroup
}

func startMeshLoad(c *runtime.Client, callers int) *meshLoad {
	l := &meshLoad{stop: make(chan struct{})}
	payload := []byte{0x0a, 0x04, 'm', 'e', 's', 'h'}
	for range callers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			buf := make([]byte, 0, 64)
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := c.Call(ctx, echo.EchoMethod, payload, buf)
				cancel()
				l.calls.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, &err)
				}
				time.Sleep(200 * time.Microsecond) // a steady load, not a flood
			}
		}()
	}
	return l
}

func (l *meshLoad) end() (calls, failed int64, first error) {
	close(l.stop)
	l.wg.Wait()
	if e := l.firstErr.Load(); e != nil {
		first = *e
	}
	return l.calls.Load(), l.failed.Load(), first
}

var requestsRE = regexp.MustCompile(`msg=loop .*requests=(\d+)`)

// requestsServed sums the requests of the last "loop" stats lines a serve
// process logged (at exit, or with --stats).
func requestsServed(logs string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if m := requestsRE.FindStringSubmatch(line); m != nil {
			n, _ = strconv.Atoi(m[1]) // one loop: the last line is the total
		}
	}
	return n
}

// Debian's etcd as a separate process, two `zerohop serve` in two
// namespaces registering, a client namespace calling them by name;
// `zerohop services` and `zerohop call --service` see the same.
func TestMeshEtcdBinaryTwoServers(t *testing.T) {
	m := newMeshEnv(t, 2)
	s1, s2 := m.serve(1), m.serve(2)
	c, _ := m.dial(m.etcdResolver())
	took := waitEndpoints(t, c, 10*time.Second, m.addr(1), m.addr(2))
	t.Logf("client found both servers %v after DialService", took.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2000 {
		p := []byte{0x08, byte(i), 0x10, byte(i >> 8)}
		rep, err := c.Call(ctx, echo.EchoMethod, p, nil)
		if err != nil || !bytes.Equal(rep.Payload, p) {
			t.Fatalf("call %d by name: %x, %v", i, rep.Payload, err)
		}
	}
	code, out, errOut := m.zerohop("services", "--no-node-table", "--etcd", m.etcdURL)
	if code != 0 || !strings.Contains(out, m.addr(1).String()) || !strings.Contains(out, m.addr(2).String()) || !strings.Contains(out, "lease=") {
		t.Errorf("zerohop services: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	t.Logf("zerohop services --etcd:\n%s", out)
	code, out, errOut = m.zerohop("call", "--service", meshService, "--etcd", m.etcdURL, "--field", "1:string=hello", echo.EchoMethod)
	if code != 0 || !strings.Contains(out, `"hello"`) {
		t.Errorf("zerohop call --service: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, s := range []*serveProc{s1, s2} {
		s.cmd.Process.Signal(syscall.SIGTERM)
		<-s.exited
	}
	n1, n2 := requestsServed(s1.logs.String()), requestsServed(s2.logs.String())
	t.Logf("requests served: server 1 %d, server 2 %d", n1, n2)
	if n1 == 0 || n2 == 0 || n1+n2 < 2000 {
		t.Errorf("servers served %d and %d requests of the 2,000+ calls: both must have served", n1, n2)
	}
}

// kill -9 one of three servers under a steady load of calls with
// deadlines: no call fails (failover), the dead endpoint is ejected
// within milliseconds of its first failure, and its lease expiry removes
// it from discovery; a new server registering then is picked at once.
func TestMeshKillServer(t *testing.T) {
	m := newMeshEnv(t, 3)
	var procs []*serveProc
	for i := 1; i <= 3; i++ {
		procs = append(procs, m.serve(i))
	}
	c, hb := m.dial(m.etcdResolver())
	waitEndpoints(t, c, 10*time.Second, m.addr(1), m.addr(2), m.addr(3))
	load := startMeshLoad(c, 8)
	time.Sleep(time.Second)
	// The checker's view of the endpoint, sampled until discovery drops
	// it: the first ejection after the kill.
	var ejected health.EndpointStats
	var killed time.Time
	var killedNs atomic.Int64
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, st := range hb.Stats() {
				if k := killedNs.Load(); st.Addr == m.addr(1) && k != 0 && ejected.Ejections == 0 && st.EjectedAt.UnixNano() >= k {
					ejected = st
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	killed = time.Now()
	killedNs.Store(killed.UnixNano())
	procs[0].kill()
	gone := waitEndpoints(t, c, etcd.DefaultTTL+10*time.Second, m.addr(2), m.addr(3))
	close(stopSampling)
	<-sampled
	time.Sleep(500 * time.Millisecond)
	calls, failed, first := load.end()
	t.Logf("%d calls with 1 s deadlines from 8 callers, %d failed; server 1 killed (SIGKILL) after 1 s", calls, failed)
	t.Logf("lease expiry removed it from discovery %v after the kill (TTL %v; the target is TTL + 1 s)", gone.Round(time.Millisecond), etcd.DefaultTTL)
	if failed != 0 {
		t.Errorf("%d of %d calls failed; first: %v", failed, calls, first)
	}
	// The stats of the endpoint are those of its last moment in discovery.
	if ejected.Ejections == 0 {
		t.Errorf("the killed endpoint was not ejected before discovery dropped it")
	} else {
		t.Logf("passive ejection: %q, %v after its first failure, %v after the kill (ejections %d, failures %d)",
			ejected.Reason, ejected.EjectedAt.Sub(ejected.FirstFailure), ejected.EjectedAt.Sub(killed).Round(time.Microsecond),
			ejected.Ejections, ejected.Failures)
	}
	// A new server registering is picked within a second or so.
	load = startMeshLoad(c, 8)
	start := time.Now()
	p := m.serve(1, "--stats", "20ms")
	serving := time.Since(start)
	seen := waitEndpoints(t, c, 10*time.Second, m.addr(1), m.addr(2), m.addr(3))
	var picked time.Duration
	for picked == 0 {
		if requestsServed(p.logs.String()) > 0 {
			picked = time.Since(start)
		} else if time.Since(start) > 10*time.Second {
			t.Fatalf("the new server served nothing in 10 s:\n%s", p.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	calls, failed, first = load.end()
	t.Logf("new server: serving %v after start, in the client's endpoints %v after that, first calls served by %v after start (stats every 20 ms)",
		serving.Round(time.Millisecond), seen.Round(time.Millisecond), picked.Round(time.Millisecond))
	if failed != 0 {
		t.Errorf("while the new server joined, %d of %d calls failed; first: %v", failed, calls, first)
	}
}

// SIGTERM: the server deregisters and drains (PONG draining, OVERLOADED
// to calls) for its --drain-delay; a client following etcd and one with
// a static list of the three both stop picking it before it closes, and
// no call fails.
func TestMeshGracefulStop(t *testing.T) {
	m := newMeshEnv(t, 3)
	var procs []*serveProc
	for i := 1; i <= 3; i++ {
		procs = append(procs, m.serve(i, "--drain-delay", "1s"))
	}
	byEtcd, _ := m.dial(m.etcdResolver())
	byList, hbList := m.dial(static.New(runtime.Endpoint{Addr: m.addr(1)}, runtime.Endpoint{Addr: m.addr(2)}, runtime.Endpoint{Addr: m.addr(3)}))
	waitEndpoints(t, byEtcd, 10*time.Second, m.addr(1), m.addr(2), m.addr(3))
	var pinger *runtime.Client
	if err := m.tp.Hosts[0].Do(func() error {
		var err error
		pinger, err = runtime.Dial("udp", m.addr(1).String(), runtime.WithEngine(m.eng))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pinger.Close()
	l1, l2 := startMeshLoad(byEtcd, 4), startMeshLoad(byList, 4)
	time.Sleep(time.Second)
	stopped := time.Now()
	procs[0].cmd.Process.Signal(syscall.SIGTERM)
	var pong proto.Status
	var pongErr error
	var pongAt, etcdGone, listOut time.Duration
	exited := false
	for !exited && time.Since(stopped) < 10*time.Second {
		select {
		case <-procs[0].exited:
			exited = true
			continue
		default:
		}
		now := time.Since(stopped)
		if pongAt == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			if st, err := pinger.Ping(ctx); err == nil && st == proto.PongDraining {
				pong, pongAt = st, now
			} else {
				pongErr = err
			}
			cancel()
		}
		if etcdGone == 0 && !holds(byEtcd, m.addr(1)) {
			etcdGone = now
		}
		if listOut == 0 {
			for _, st := range hbList.Stats() {
				if st.Addr == m.addr(1) && st.State == health.Draining {
					listOut = now
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	closedAt := time.Since(stopped)
	time.Sleep(300 * time.Millisecond)
	c1, f1, e1 := l1.end()
	c2, f2, e2 := l2.end()
	t.Logf("SIGTERM with --drain-delay 1s: PONG draining seen %v after, etcd client dropped it %v after, static-list client's probes marked it draining %v after; the process exited %v after",
		pongAt.Round(time.Millisecond), etcdGone.Round(time.Millisecond), listOut.Round(time.Millisecond), closedAt.Round(time.Millisecond))
	t.Logf("calls: by etcd %d (%d failed), by static list %d (%d failed)", c1, f1, c2, f2)
	if !exited {
		t.Fatal("the server did not exit within 10 s of SIGTERM")
	}
	if pong != proto.PongDraining {
		t.Errorf("no PONG said draining before the server closed (last ping error: %v)", pongErr)
	}
	if etcdGone == 0 || listOut == 0 {
		t.Errorf("a client still picked the server when it closed: etcd client dropped it at %v, static client at %v (0: never)", etcdGone, listOut)
	}
	if f1 != 0 || f2 != 0 {
		t.Errorf("failed calls: %d by etcd (first %v), %d by static list (first %v)", f1, e1, f2, e2)
	}
	if !strings.Contains(procs[0].logs.String(), "shutting down") {
		t.Errorf("server logs:\n%s", procs[0].logs.String())
	}
}

func holds(c *runtime.Client, addr netip.AddrPort) bool {
	for _, sc := range c.Endpoints() {
		if sc.Addr() == addr {
			return true
		}
	}
	return false
}

// etcd unreachable: the client keeps its endpoints and says so (the
// engine's WARN line, the resolver's counters), calls keep succeeding; a
// server starting meanwhile serves and retries its registration with
// backoff until etcd is back, then is found.
func TestMeshEtcdUnreachable(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	eng, err := runtime.NewEngine(runtime.WithEngineLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ports := []int{etcdtest.FreePort(t, "127.0.0.1"), etcdtest.FreePort(t, "127.0.0.1"), etcdtest.FreePort(t, "127.0.0.1")}
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ports[i]))
	}
	// A lease longer than etcd takes to stop: the embedded server still
	// expires leases while it shuts down (seen taking 7 s on a loaded
	// machine), and one whose keepalive stream it already closed would go
	// with the default 3 s TTL, deleting that registration before the
	// watch ends — which is etcd working, not the client losing it.
	serveLocal := func(i int) *serveProc {
		return startServeHere(t, fmt.Sprintf("server %d", i), "--addr", addr(i).String(), "--backend", "uring", "--busy-poll", "0",
			"--service", meshService, "--etcd", e.Endpoint, "--etcd-ttl", "60s", "--stats", "50ms")
	}
	serveLocal(0)
	serveLocal(1)
	cli := etcdtest.Client(t, e.Endpoint)
	b, err := etcd.NewBuilder(cli, etcd.WithProbeInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	hb, err := health.Wrap(balance.P2C(), health.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c, err := runtime.DialService(meshService, runtime.WithEngine(eng), runtime.WithResolver(b), runtime.WithBalancer(hb))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitEndpoints(t, c, 10*time.Second, addr(0), addr(1))
	load := startMeshLoad(c, 4)
	stopping := time.Now()
	e.Stop() // the embedded server's Close takes a while
	stoppedAt := time.Now()
	var warned time.Duration
	for !strings.Contains(logs.String(), "zerohop service discovery failed") {
		if time.Since(stoppedAt) > 15*time.Second {
			t.Fatalf("no WARN in 15 s of etcd being down:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	warned = time.Since(stoppedAt)
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "zerohop service discovery failed") {
			line = l
			break
		}
	}
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "service="+meshService) {
		t.Errorf("the discovery failure line: %q; want a WARN naming the service", line)
	}
	if m := regexp.MustCompile(`time=(\S+)`).FindStringSubmatch(line); m != nil {
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			warned = at.Sub(stopping)
		}
	}
	// A server starting while etcd is down serves, and retries (each
	// attempt waits for its 2 s request timeout, then the backoff).
	late := serveLocal(2)
	time.Sleep(7 * time.Second)
	st := b.Stats()
	retries := strings.Count(late.logs.String(), "registration failed, retrying")
	t.Logf("etcd down (stopping the embedded server took %v): WARN %v after the stop began; resolver errors %d, reported %d; the late server serves, and retried its registration %d times in 7 s",
		stoppedAt.Sub(stopping).Round(time.Millisecond), warned.Round(time.Millisecond), st.Errors, st.Reported, retries)
	if st.Errors == 0 || st.Reported == 0 {
		t.Errorf("resolver counters while etcd is down: %+v", st)
	}
	if retries < 2 {
		t.Errorf("the late server's registration retried %d times in 7 s:\n%s", retries, late.logs.String())
	}
	if waits := retryWaits(late.logs.String()); len(waits) >= 2 && waits[len(waits)-1] <= waits[0] {
		t.Errorf("registration retries do not back off: waits %v", waits)
	} else {
		t.Logf("registration retry waits: %v", waits)
	}
	if !holds(c, addr(0)) || !holds(c, addr(1)) {
		t.Errorf("the client lost its endpoints while etcd was down: %v", c.Endpoints())
	}
	e.Start()
	found := waitEndpoints(t, c, 15*time.Second, addr(0), addr(1), addr(2))
	calls, failed, first := load.end()
	t.Logf("etcd back: the late server was found %v after etcd restarted; %d calls, %d failed", found.Round(time.Millisecond), calls, failed)
	if failed != 0 {
		t.Errorf("%d of %d calls failed while etcd was down; first: %v", failed, calls, first)
	}
}

var retryRE = regexp.MustCompile(`registration failed, retrying.* retry_in=([0-9.]+[a-zµ]+)`)

// retryWaits are the retry_in values of the registry's WARN lines.
func retryWaits(logs string) []time.Duration {
	var out []time.Duration
	for _, m := range retryRE.FindAllStringSubmatch(logs, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// startServeHere starts `zerohop serve args…` in this test's own network
// namespace (loopback only) and returns once it serves.
func startServeHere(t *testing.T, name string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	p := &serveProc{t: t, name: name, cmd: cmd, logs: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	for i := 0; !strings.Contains(p.logs.String(), "zerohop serving"); i++ {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before serving:\n%s", name, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if i == 1500 {
			t.Fatalf("%s not serving after 30 s:\n%s", name, p.logs.String())
		}
	}
	return p
}

// `zerohop serve --node-table`: the server is in the node table for as
// long as it serves, `zerohop services` lists it, and a client in another
// namespace calls it by name with `zerohop call --service --node-table`.
func TestServeNodeTable(t *testing.T) {
	topo.RequireRoot(t)
	link := topo.Pair(t, topo.Config{})
	svc := fmt.Sprintf("test.NodeServe%d", os.Getpid())
	addr := netip.AddrPortFrom(link.A.Addr4, 7000)
	p := startServe(t, link.A.Host, "server", false, "--addr", addr.String(), "--backend", "uring", "--busy-poll", "0",
		"--node-table", "--service", svc, "--weight", "7", "--zone", "z9")
	code, out, errOut := runCmd(t, link.B.Host.Command(t.Context(), os.Args[0], "services", "--service", svc))
	if code != 0 || !strings.Contains(out, addr.String()) || !strings.Contains(out, fmt.Sprintf("pid=%d", p.cmd.Process.Pid)) ||
		!regexp.MustCompile(`serving\s+7\s+z9`).MatchString(out) {
		t.Errorf("zerohop services --service %s: exit %d, stdout:\n%s\nstderr: %s", svc, code, out, errOut)
	}
	t.Logf("zerohop services:\n%s", out)
	code, out, errOut = runCmd(t, link.B.Host.Command(t.Context(), os.Args[0], "call", "--service", svc, "--node-table",
		"--field", "1:string=node", echo.EchoMethod))
	if code != 0 || !strings.Contains(out, `"node"`) {
		t.Errorf("zerohop call --service --node-table: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	code, out, _ = runCmd(t, link.B.Host.Command(t.Context(), os.Args[0], "services", "--service", svc))
	if code != 0 || strings.Contains(out, addr.String()) {
		t.Errorf("after SIGTERM the node table still lists the server (exit %d):\n%s", code, out)
	}
}

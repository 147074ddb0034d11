package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/telemetry"
	"github.com/zerohop/zerohop/proto"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs Debian's prometheus on a loopback port with a
// generated config scraping target every second and a temp storage dir;
// it is stopped in cleanup, also when the test fails.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		topo.SkipMissing(t, "prometheus not installed (Debian package prometheus; scripts/test installs it)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: zerohop\n    static_configs:\n      - targets: ['%s']\n", target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	base := "http://" + listen
	for i := 0; i < 300; i++ { // bounded: ≤ 30 s
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("prometheus never became ready:\n%s", logs.String())
	return ""
}

// promQuery runs an instant query and returns the values of its vector.
func promQuery(t *testing.T, base, q string) []float64 {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: %s %s", q, r.Status, r.Error)
	}
	var out []float64
	for _, s := range r.Data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			t.Fatalf("query %s: value %v", q, s.Value[1])
		}
		out = append(out, v)
	}
	return out
}

// TestPrometheusScrapesServe: a real Prometheus scrapes `zerohop serve
// --admin` while calls run; its HTTP API then reports exactly the calls
// made, and histogram_quantile over the duration histogram gives a value.
func TestPrometheusScrapesServe(t *testing.T) {
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	base := startPrometheus(t, adminAddr)
	cmd := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0", "--backend", "uring", "--admin", adminAddr)
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("serve output:\n%s", logs.String())
		}
	}()
	ep, _ := telemetry.ParseEndpoint(adminAddr)
	hc := ep.HTTPClient(2 * time.Second)
	defer hc.CloseIdleConnections()
	var rep telemetry.StatReport
	for i := 0; i < 100 && rep.Server == nil; i++ { // ≤ 10 s
		rep, _ = fetchStat(hc, ep)
		if rep.Server == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if rep.Server == nil {
		t.Fatal("serve's admin endpoint never answered")
	}
	addr := netip.MustParseAddrPort(rep.Server.Addr)

	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out, in := make([]byte, 256), make([]byte, 256)
	calls := 0
	call := func() {
		calls++
		f, _ := proto.EncodeRequest(out, uint64(calls), proto.MethodID(echo.EchoMethod), 0, []byte{8, 1})
		for attempt := 0; attempt < 5; attempt++ {
			conn.Write(f)
			conn.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := conn.Read(in); err == nil {
				if r, err := proto.Parse(in[:n]); err == nil && r.RequestID() == uint64(calls) {
					return
				}
			}
		}
		t.Fatalf("call %d got no reply", calls)
	}
	// Prometheus applies its targets a few seconds after it is ready: wait
	// for its first scrape, so that the calls below fall between scrapes
	// and rate() sees them.
	for i := 0; i < 150; i++ { // ≤ 30 s
		if up := promQuery(t, base, `up{job="zerohop"}`); len(up) == 1 && up[0] == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Calls spread over several scrapes.
	for batch := 0; batch < 3; batch++ {
		for i := 0; i < 100; i++ {
			call()
		}
		time.Sleep(1200 * time.Millisecond)
	}

	q := fmt.Sprintf(`zerohop_server_requests_total{job="zerohop",method=%q,status="OK"}`, echo.EchoMethod)
	var got []float64
	for i := 0; i < 100; i++ { // ≤ 20 s: the next scrape after the last call
		got = promQuery(t, base, q)
		if len(got) == 1 && got[0] == float64(calls) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(got) != 1 || got[0] != float64(calls) {
		t.Fatalf("Prometheus has %s = %v, want %d", q, got, calls)
	}
	if up := promQuery(t, base, `up{job="zerohop"}`); len(up) != 1 || up[0] != 1 {
		t.Errorf("up = %v", up)
	}
	hq := fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(zerohop_server_request_duration_seconds_bucket{method=%q}[1m])))`, echo.EchoMethod)
	v := promQuery(t, base, hq)
	if len(v) != 1 || math.IsNaN(v[0]) || v[0] <= 0 || v[0] > 100 {
		t.Errorf("%s = %v, want one value in (0, 100] s", hq, v)
	}
	t.Logf("%d calls; Prometheus: p99 %.6f s", calls, v)
	if rx := promQuery(t, base, `sum(zerohop_loop_rx_packets_total{job="zerohop"})`); len(rx) != 1 || rx[0] < float64(calls) {
		t.Errorf("rx packets %v, want ≥ %d", rx, calls)
	}
	if !strings.Contains(logs.String(), "zerohop admin endpoint") {
		t.Errorf("serve did not log its admin endpoint:\n%s", logs.String())
	}
}

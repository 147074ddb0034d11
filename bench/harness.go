package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
	"golang.org/x/sys/unix"
)

// Config configures a harness run. Zero values take the defaults noted.
type Config struct {
	// Exe is a binary that has the subcommands serve, bench-server and
	// bench-client (zerohop itself); Env is added to its environment.
	Exe string
	Env []string
	// Variants to run, in AllVariants order; empty means all.
	Variants []string
	// Loads are the GWIR load generators (AllGWIRLoads) each GWIR variant
	// is measured under, one row per variant and load; empty means all.
	// The runtime-client load drives only EngineLoadVariants.
	Loads []string
	// Outstanding requests per point; empty means 1, 16, 64, 256.
	Outstanding []int
	// Warmup before and Duration of each point's measured window; zero
	// means 1 s and 5 s.
	Warmup, Duration time.Duration
	// PayloadBytes per request (and reply); zero means 64.
	PayloadBytes int
	// Queues of the veth and of the zerohop server; zero means 1.
	Queues int
	// ServerCores run the servers (one per queue), ClientCore the load
	// generator; defaults: core 0 for the server, the last core for the
	// client.
	ServerCores []int
	ClientCore  int
	// InstallNginx allows `apt-get install nginx` when nginx is missing.
	InstallNginx bool
	// ForceLoopback runs every variant that can on 127.0.0.1 in this
	// namespace even as root (the variants that need a NIC are skipped).
	ForceLoopback bool
	// CPUProfileDir, when set, makes each zerohop server write a CPU
	// profile there (zerohop-xsk.pprof, zerohop-uring.pprof).
	CPUProfileDir string
	// Progress receives a progress bar (Terminal) or one line per point;
	// Log receives notes. nil discards.
	Progress io.Writer
	Terminal bool
	Log      io.Writer
}

// Ports the servers listen on inside the server namespace.
const (
	gwirPort     = 9000
	httpPort     = 8080
	upstreamPort = 8081
)

func (c *Config) defaults() {
	if len(c.Variants) == 0 {
		c.Variants = AllVariants
	}
	if len(c.Loads) == 0 {
		c.Loads = AllGWIRLoads
	}
	if len(c.Outstanding) == 0 {
		c.Outstanding = []int{1, 16, 64, 256}
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 64
	}
	if c.Queues == 0 {
		c.Queues = 1
	}
	if len(c.ServerCores) == 0 {
		c.ServerCores = []int{0}
	}
	if c.ClientCore < 0 || (c.ClientCore == 0 && goruntime.NumCPU() > 1 && c.ServerCores[0] == 0) {
		c.ClientCore = goruntime.NumCPU() - 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// placement says where a process runs: inside a namespace of the topology,
// or (host nil) in the caller's namespace.
type placement struct{ host *topo.Host }

// command runs name pinned to cores (taskset) inside the placement's
// namespace, in its own process group (so stopping it stops its children,
// like nginx's workers) and killed if the harness dies.
func (p placement) command(cores []int, name string, args ...string) *exec.Cmd {
	full := []string{"-c", joinInts(cores)}
	if p.host != nil {
		full = append(full, "ip", "netns", "exec", p.host.Name)
	}
	full = append(append(full, name), args...)
	cmd := exec.Command("taskset", full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// harness is one run in progress.
type harness struct {
	cfg            Config
	root           bool
	topology       *topo.Topology
	server, client placement
	serverIP       netip.Addr
	serverIface    string
	// The XSK load's view of the veth: the client's interface and address,
	// the server's MAC.
	clientIface    string
	clientIP       netip.Addr
	serverMAC      string
	tmp            string
	progress       *progressBar
	clientIdentity string // the sealed variant's load identity (sealed.go)
	clientService  string // the dialservice variant's service name
}

// Run runs every configured variant and returns the report. It removes
// the topology and stops every subprocess before returning, also when ctx
// is cancelled (Ctrl-C), in which case it returns ctx's error with the
// partial report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if cfg.Exe == "" {
		return nil, errors.New("bench: Config.Exe is needed (the zerohop binary)")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, fmt.Errorf("bench: taskset (util-linux) is needed to pin processes: %w", err)
	}
	h := &harness{cfg: cfg}
	var err error
	h.tmp, err = os.MkdirTemp("", "zerohop-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	os.Chmod(h.tmp, 0o755) // nginx workers run as nobody
	defer os.RemoveAll(h.tmp)
	missing := topo.MissingCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_BPF)
	h.root = missing == ""
	topoDesc := ""
	if h.root && !cfg.ForceLoopback {
		t, err := topo.Build(topo.Config{Queues: cfg.Queues, TxChecksumOff: true, XPS: cfg.Queues > 1})
		if err != nil {
			return nil, fmt.Errorf("bench: building the topology: %w", err)
		}
		h.topology = t
		defer func() {
			if err := t.Close(); err != nil {
				fmt.Fprintln(cfg.Log, "bench:", err)
			}
		}()
		link := t.Links[0]
		h.server, h.client = placement{link.A.Host}, placement{link.B.Host}
		h.serverIP, h.serverIface = link.A.Addr4, link.A.Iface
		h.clientIface, h.clientIP, h.serverMAC = link.B.Iface, link.B.Addr4, link.A.MAC.String()
		topoDesc = fmt.Sprintf("client netns ↔ veth (%d queue(s), client TX checksum offload off) ↔ server netns", cfg.Queues)
	} else {
		h.serverIP = netip.MustParseAddr("127.0.0.1")
		topoDesc = "loopback in one namespace"
		if !h.root {
			fmt.Fprintf(cfg.Log, "bench: not root (missing %s): running the loopback variants only\n", missing)
		}
	}
	rep := &Report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(cfg, topoDesc),
		Settings: Settings{Outstanding: cfg.Outstanding, DurationS: cfg.Duration.Seconds(),
			WarmupS: cfg.Warmup.Seconds(), PayloadBytes: cfg.PayloadBytes, Queues: cfg.Queues, Loads: cfg.Loads},
	}
	if h.topology != nil {
		for _, host := range h.topology.Hosts {
			rep.Namespaces = append(rep.Namespaces, host.Name)
		}
	}
	rows := 0
	for _, name := range cfg.Variants {
		rows += max(1, len(loadsFor(name, variantServerLoad(name), cfg.Loads)))
	}
	h.progress = newProgressBar(cfg.Progress, cfg.Terminal, rows*len(cfg.Outstanding), cfg.Warmup+cfg.Duration)
	defer h.progress.finish()
	for _, name := range AllVariants {
		if !contains(cfg.Variants, name) {
			continue
		}
		rep.Variants = append(rep.Variants, h.runVariant(ctx, name)...)
		if err := ctx.Err(); err != nil {
			rep.ComputeRatios()
			return rep, err
		}
	}
	rep.ComputeRatios()
	return rep, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// serverProc is a started server subprocess.
type serverProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

func (h *harness) start(cmd *exec.Cmd) (*serverProc, error) {
	p := &serverProc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	cmd.Env = append(os.Environ(), h.cfg.Env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", strings.Join(cmd.Args, " "), err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *serverProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process group to end (SIGTERM), then kills it after 5 s.
func (p *serverProc) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Reap stragglers of the group (nginx workers outlive a killed master).
	syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *serverProc) tail() string {
	s := strings.TrimSpace(p.stderr.String())
	lines := strings.Split(s, "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// runVariant starts the servers of one variant, runs every point under
// each load that applies to it (one row per load) and stops them again.
func (h *harness) runVariant(ctx context.Context, name string) []VariantResult {
	planned := loadsFor(name, variantServerLoad(name), h.cfg.Loads)
	if len(planned) == 0 {
		h.progress.skip(len(h.cfg.Outstanding))
		return []VariantResult{{Name: name, Points: []Point{},
			Skipped: fmt.Sprintf("none of the selected loads (%s) drives it", strings.Join(h.cfg.Loads, ", "))}}
	}
	procs, serverLoad, addr, skip := h.startServers(ctx, name)
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	if skip != "" {
		fmt.Fprintf(h.cfg.Log, "bench: %s skipped: %s\n", name, skip)
		rows := make([]VariantResult, len(planned))
		for i, load := range planned {
			rows[i] = VariantResult{Name: name, Load: load, Points: []Point{}, Skipped: skip}
			h.progress.skip(len(h.cfg.Outstanding))
		}
		return rows
	}
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.cmd.Process.Pid
	}
	scraped := func() string { return "" }
	if name == VariantXSKTelemetry {
		scraped = scrapeAdmin(h.adminSocket(name), time.Second)
		defer scraped()
	}
	var rows []VariantResult
	for _, load := range loadsFor(name, serverLoad, h.cfg.Loads) {
		v := VariantResult{Name: name, Load: load, Points: []Point{}}
		if why := h.loadUnavailable(load); why != "" {
			v.Skipped = why
			h.progress.skip(len(h.cfg.Outstanding))
			rows = append(rows, v)
			continue
		}
		h.runPoints(ctx, &v, procs, pids, addr)
		if len(procs) > 0 {
			v.PeakRSSBytes = treeUsage(pids...).hwmB
			v.Detail = backendLine(procs[0].stderr.String())
		}
		rows = append(rows, v)
	}
	if note := scraped(); note != "" {
		for i := range rows {
			rows[i].Detail += "; " + note
		}
	}
	return rows
}

// runPoints runs every point of one row.
func (h *harness) runPoints(ctx context.Context, v *VariantResult, procs []*serverProc, pids []int, addr string) {
	for _, n := range h.cfg.Outstanding {
		if ctx.Err() != nil {
			return
		}
		for _, p := range procs {
			if p.exited() {
				v.Skipped = fmt.Sprintf("server exited (%v): %s", p.err, p.tail())
				h.progress.skip(len(h.cfg.Outstanding) - len(v.Points))
				return
			}
		}
		h.progress.begin(v.Name+" ("+v.Load+")", n)
		pt, detail := h.runPoint(ctx, v.Load, addr, n, pids)
		h.progress.end(pt)
		v.Points = append(v.Points, pt)
		if v.LoadDetail == "" {
			v.LoadDetail = detail
		}
	}
}

// loadUnavailable says why a load cannot run in this harness, or "".
func (h *harness) loadUnavailable(load string) string {
	if load == LoadXSK && h.topology == nil {
		if !h.root {
			return "the XSK load needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF) for the veth topology and AF_XDP"
		}
		return "the XSK load needs the veth topology (loopback run)"
	}
	return ""
}

// adminSocket is where a variant's server serves its admin endpoint: a
// socket file in the run's temp dir, which the harness (in its own
// network namespace) reaches where an abstract name would not.
func (h *harness) adminSocket(variant string) string {
	return filepath.Join(h.tmp, variant+"-admin.sock")
}

// scrapeAdmin GETs /metrics from the admin socket every interval, as
// Prometheus would, until the returned stop is called; stop (safe to call
// again) says how many scrapes there were.
func scrapeAdmin(socket string, interval time.Duration) (stop func() string) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}
	done, finished := make(chan struct{}), make(chan struct{})
	var ok, failed int
	var bytes int64
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			resp, err := client.Get("http://zerohop/metrics")
			if err != nil {
				failed++
				continue
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				failed++
				continue
			}
			ok++
			bytes += n
		}
	}()
	var once sync.Once
	var note string
	return func() string {
		once.Do(func() {
			close(done)
			<-finished
			client.CloseIdleConnections()
			avg := int64(0)
			if ok > 0 {
				avg = bytes / int64(ok)
			}
			note = fmt.Sprintf("admin /metrics scraped every %v: %d scrapes of ~%d bytes, %d failed", interval, ok, avg, failed)
		})
		return note
	}
}

// backendLine picks the start-up line in which zerohop serve says which
// backend it runs on.
func backendLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "backend=") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// startServers starts the processes of a variant and returns them, the
// load kind and the address the client targets, or why it is skipped.
func (h *harness) startServers(ctx context.Context, name string) (procs []*serverProc, load, addr, skip string) {
	cfg := h.cfg
	gwirAddr := netip.AddrPortFrom(h.serverIP, gwirPort).String()
	httpAddr := netip.AddrPortFrom(h.serverIP, httpPort).String()
	h.clientIdentity, h.clientService = "", "" // set below for the variants whose load needs them
	needNIC := name == VariantXSK || name == VariantXSKPolicies || name == VariantXSKTelemetry || name == VariantXSKDialService || name == VariantRawXSK
	if needNIC && h.topology == nil {
		if !h.root {
			return nil, "", "", "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF) for the veth topology and AF_XDP"
		}
		return nil, "", "", "needs the veth topology (loopback run)"
	}
	queues := make([]int, cfg.Queues)
	for i := range queues {
		queues[i] = i
	}
	cores := cfg.ServerCores
	for len(cores) < cfg.Queues {
		cores = append(cores, cores[len(cores)-1])
	}
	if p, l, a, why, ok := h.startSealedServers(name, gwirAddr, cores, queues); ok { // sealed.go
		return p, l, a, why
	}
	launch := func(cmd *exec.Cmd) bool {
		p, err := h.start(cmd)
		if err != nil {
			skip = err.Error()
			return false
		}
		procs = append(procs, p)
		return true
	}
	switch name {
	case VariantXSK, VariantXSKPolicies, VariantXSKTelemetry, VariantXSKDialService, VariantUring:
		backend := "xsk"
		if name == VariantUring {
			backend = "uring"
		}
		args := []string{"serve", "--addr", gwirAddr, "--queues", joinInts(queues), "--cores", joinInts(cores[:cfg.Queues]),
			"--backend", backend}
		if name == VariantXSKPolicies {
			path := filepath.Join(h.tmp, "policies.yaml")
			if err := os.WriteFile(path, []byte(BenchPolicy(netip.PrefixFrom(h.serverIP, 24).Masked())), 0o644); err != nil {
				return nil, "", "", err.Error()
			}
			args = append(args, "--policy", path, "--shed")
		}
		if name == VariantXSKTelemetry {
			args = append(args, "--admin", "unix:"+h.adminSocket(name))
		}
		if h.serverIface != "" && backend == "xsk" {
			args = append(args, "--iface", h.serverIface)
		}
		if cfg.CPUProfileDir != "" {
			prof, _ := filepath.Abs(filepath.Join(cfg.CPUProfileDir, name+".pprof"))
			args = append([]string{"bench-server", "--kind", "zerohop", "--cpuprofile", prof, "--"}, args...)
		}
		if name == VariantXSKDialService {
			h.clientService = dialServiceName
		}
		launch(h.server.command(cores, cfg.Exe, args...))
		return procs, LoadGWIR, gwirAddr, skip
	case VariantNetUDP:
		launch(h.server.command(cores, cfg.Exe, "bench-server", "--kind", "netudp", "--addr", gwirAddr))
		return procs, LoadGWIR, gwirAddr, skip
	case VariantGnet:
		launch(h.server.command(cores, cfg.Exe, "bench-server", "--kind", "gnet", "--addr", gwirAddr))
		return procs, LoadGWIR, gwirAddr, skip
	case VariantNetHTTP:
		launch(h.server.command(cores, cfg.Exe, "bench-server", "--kind", "nethttp", "--addr", httpAddr))
		return procs, LoadHTTP, httpAddr, skip
	case VariantSidecar:
		nginx, why := ensureNginx(ctx, cfg.InstallNginx, h.root, cfg.Log)
		if why != "" {
			return nil, "", "", why
		}
		upstream := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), upstreamPort).String()
		dir := filepath.Join(h.tmp, "nginx")
		conf, err := writeNginxConfig(dir, httpAddr, upstream, -1)
		if err != nil {
			return nil, "", "", err.Error()
		}
		if !launch(h.server.command(cores, cfg.Exe, "bench-server", "--kind", "nethttp", "--addr", upstream)) {
			return procs, "", "", skip
		}
		// taskset pins nginx (master and worker) to the same core budget.
		launch(h.server.command(cores, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")))
		return procs, LoadHTTP, httpAddr, skip
	case VariantRawXSK:
		launch(h.server.command(cores, cfg.Exe, "bench-server", "--kind", "raw-xsk", "--addr", gwirAddr,
			"--iface", h.serverIface, "--queue", "0", "--core", strconv.Itoa(cores[0])))
		return procs, LoadGWIR, gwirAddr, skip
	}
	return nil, "", "", "unknown variant"
}

// BenchPolicy is the policy file of the zerohop-xsk+policies variant: the
// load's subnet is allowed after two rules that do not match it (so the
// matcher walks them), everything else is denied (so the XDP ACL holds a
// deny for every source and an allow for the subnet, looked up for every
// packet), and one rate limit covers every method far above any load.
// The variant also turns the shedder on; it guards blocking methods, and
// the echo service's methods run on the loop, so it costs only its check
// at registration there.
func BenchPolicy(load netip.Prefix) string {
	return fmt.Sprintf(`default: deny
rules:
  - name: test-net
    action: deny
    sources: [192.0.2.0/24]
  - name: no-writes-for-batch
    action: deny
    callers: [batch]
    methods: ["Put*"]
  - name: load
    action: allow
    sources: [%v]
limits:
  - name: high
    method: "*"
    rate: 1e9
    burst: 1000000
`, load)
}

// xskLoadPort is the client's UDP port under the XSK load, steered to its
// socket on the client's veth; outside the ephemeral range, so no kernel
// socket of the client namespace has it.
const xskLoadPort = 9001

// runPoint runs one client subprocess and measures the servers, and the
// client itself, over its window; it also returns the client's
// LoadDetail.
func (h *harness) runPoint(ctx context.Context, load, addr string, n int, pids []int) (Point, string) {
	cfg := h.cfg
	pt := Point{Outstanding: n}
	args := []string{"bench-client", "--kind", clientKind(load), "--addr", addr,
		"--n", strconv.Itoa(n), "--warmup", cfg.Warmup.String(), "--duration", cfg.Duration.String(),
		"--payload", strconv.Itoa(cfg.PayloadBytes)}
	switch load {
	case LoadXSK:
		args = append(args, "--iface", h.clientIface, "--queues", strconv.Itoa(cfg.Queues),
			"--src", netip.AddrPortFrom(h.clientIP, xskLoadPort).String(), "--dst-mac", h.serverMAC)
	case LoadEngine:
		args = append(args, "--core", strconv.Itoa(cfg.ClientCore))
	}
	args = append(args, h.clientArgs(load)...) // sealed.go
	cmd := h.client.command([]int{cfg.ClientCore}, cfg.Exe, args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pt.Error = err.Error()
		return pt, ""
	}
	if err := cmd.Start(); err != nil {
		pt.Error = fmt.Sprintf("starting the client: %v", err)
		return pt, ""
	}
	// Cancelling ctx stops the client's group.
	stopWatch := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stopWatch()
	var (
		u0, u1 procUsage // servers
		c0, c1 procUsage // the client
		t0, t1 time.Time
		res    ClientResult
		gotRes bool
	)
	client := cmd.Process.Pid
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch line {
		case markerReady:
			h.progress.ready()
		case markerMeasureStart:
			u0, c0, t0 = treeUsage(pids...), treeUsage(client), time.Now()
		case markerMeasureEnd:
			u1, c1, t1 = treeUsage(pids...), treeUsage(client), time.Now()
		default:
			if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &res) == nil {
				gotRes = true
			}
		}
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		pt.Error = "interrupted"
		return pt, ""
	case werr != nil || !gotRes:
		pt.Error = fmt.Sprintf("client: %v: %s", werr, strings.TrimSpace(stderr.String()))
		return pt, ""
	case t0.IsZero() || t1.IsZero():
		pt.Error = "client printed no measurement window"
		return pt, ""
	}
	window := res.WindowS
	if window <= 0 {
		window = t1.Sub(t0).Seconds()
	}
	serverCPU := (u1.cpu - u0.cpu).Seconds()
	// The client's CPU from /proc over the same instants as the server's;
	// its own getrusage figure only if /proc could not be read.
	clientCPU := (c1.cpu - c0.cpu).Seconds()
	if c0.counted == 0 || c1.counted == 0 {
		clientCPU = res.CPUSeconds
	}
	wall := t1.Sub(t0).Seconds()
	pt.Requests, pt.Errors, pt.Retransmits, pt.LoadDrops = res.Requests, res.Errors, res.Retransmits, res.LoadDrops
	pt.RPS = float64(res.Requests) / window
	pt.P50Us, pt.P99Us, pt.P999Us, pt.MaxUs = res.P50Us, res.P99Us, res.P999Us, res.MaxUs
	pt.ServerCPUCores = serverCPU / wall
	pt.ClientCPUCores = clientCPU / wall
	pt.ClientSpinIdleCores = res.SpinIdleS / window
	if res.Requests > 0 {
		pt.CPUSPerMReq = serverCPU / (float64(res.Requests) / 1e6)
		pt.ClientCPUSPerMReq = clientCPU / (float64(res.Requests) / 1e6)
	}
	pt.RSSBytes = u1.rssB
	return pt, res.LoadDetail
}

func machine(cfg Config, topoDesc string) Machine {
	m := Machine{CPUs: goruntime.NumCPU(), GoVersion: goruntime.Version(), ServerCores: cfg.ServerCores,
		ClientCore: cfg.ClientCore, Topology: topoDesc}
	m.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// lockedBuffer is a bytes.Buffer safe for a subprocess's copier goroutine
// and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep the tail bounded
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

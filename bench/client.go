package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/proto"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

// Load kinds of a client (bench-client --kind): LoadGWIR is the
// kernel-UDP GWIR client, LoadHTTP the HTTP one; LoadXSK and LoadEngine
// (loads.go) are the other GWIR clients.
const (
	LoadGWIR = "gwir"
	LoadHTTP = "http"
)

// Markers a client prints on stdout, one per line, before its JSON result.
const (
	markerReady        = "ready"
	markerMeasureStart = "measure-start"
	markerMeasureEnd   = "measure-end"
)

// ClientConfig configures one load point of a client.
type ClientConfig struct {
	Kind         string // LoadGWIR, LoadHTTP, LoadXSK or LoadEngine
	Addr         string // IP:PORT of the server
	Outstanding  int
	Warmup       time.Duration
	Duration     time.Duration
	PayloadBytes int
	// Timeout after which a request counts as an error and is resent
	// (the kernel-UDP and XSK loads) or abandoned (HTTP); the
	// runtime-client load leaves retransmission to its engine. Zero means
	// 500 ms.
	Timeout time.Duration
	// ReadyTimeout bounds the wait for the server's first answer. Zero
	// means 15 s.
	ReadyTimeout time.Duration
	// Count, when > 0, also ends the measured window of the XSK and
	// runtime-client loads after that many replies.
	Count int64

	// The XSK load: the client's interface (in the client's namespace),
	// its address there (IP:PORT; the port is steered to the AF_XDP
	// socket), the server's Ethernet address (the next hop) and how many
	// of the interface's queues to bind (zero means 1).
	Iface  string
	Src    string
	DstMAC string
	Queues int

	// EngineCores pins the runtime-client load's engine loop; empty
	// leaves the engine's default.
	EngineCores []int

	// Identity is an identity directory with which the runtime-client load
	// seals its calls (the sealed variant, sealed.go); "" for none.
	Identity string

	// Service, when set, makes the runtime-client load call by this
	// service name, mesh.DialService over a static resolver of Addr (the
	// dialservice variant), instead of runtime.Dial of Addr.
	Service string
}

// ClientResult is what a client measured over its window; it is the JSON
// line a bench-client prints last.
type ClientResult struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	Timeouts   int64   `json:"timeouts"`
	Stale      int64   `json:"stale"` // replies to requests already given up on
	WindowS    float64 `json:"window_s"`
	P50Us      float64 `json:"p50_us"`
	P99Us      float64 `json:"p99_us"`
	P999Us     float64 `json:"p999_us"`
	MaxUs      float64 `json:"max_us"`
	CPUSeconds float64 `json:"cpu_s"`
	// Retransmits: copies sent again because no reply came in time (the
	// kernel and XSK loads count one per timeout; the runtime-client
	// load reports its engine's count).
	Retransmits int64 `json:"retransmits"`
	// LoadDrops: packets the XSK load's sockets lost (RX ring full, fill
	// ring empty), by the kernel's count. KernelPath: datagrams to the
	// XSK load's port that the steering program passed to the kernel.
	LoadDrops  uint64 `json:"load_drops,omitempty"`
	KernelPath int64  `json:"kernel_path,omitempty"`
	// LoadDetail says how the load generator ran (e.g. the XDP mode).
	LoadDetail string `json:"load_detail,omitempty"`
	// SpinIdleS: seconds of the window the XSK load spent in loop passes
	// that neither sent nor received (spinning on an empty RX ring before
	// it sleeps): CPU time it would give up if the server were faster.
	SpinIdleS float64 `json:"spin_idle_s,omitempty"`
}

func (c *ClientConfig) defaults() {
	if c.Timeout == 0 {
		c.Timeout = 500 * time.Millisecond
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 15 * time.Second
	}
	if c.Outstanding < 1 {
		c.Outstanding = 1
	}
	if c.PayloadBytes < 2 {
		c.PayloadBytes = 2
	}
}

// RunClient drives one load point and writes the markers and the JSON
// result to out (the body of `zerohop bench-client`).
func RunClient(ctx context.Context, cfg ClientConfig, out io.Writer) error {
	cfg.defaults()
	var res ClientResult
	var err error
	switch cfg.Kind {
	case LoadGWIR, LoadKernelUDP:
		res, err = runGWIRClient(ctx, cfg, out)
		res.Retransmits = res.Timeouts // each timeout resends
	case LoadHTTP:
		res, err = runHTTPClient(ctx, cfg, out)
	case LoadXSK:
		res, err = runXSKClient(ctx, cfg, out)
	case LoadEngine:
		res, err = runEngineClient(ctx, cfg, out)
	default:
		return fmt.Errorf("bench client: unknown load kind %q", cfg.Kind)
	}
	if err != nil {
		return err
	}
	data, _ := json.Marshal(res)
	_, err = fmt.Fprintf(out, "%s\n", data)
	return err
}

// Payload returns a valid protobuf payload of exactly n bytes (n ≥ 2):
// field 1 of type bytes, plus an empty field 2 for the sizes one field
// cannot hit (a length varint growing by a byte skips one size). The same
// bytes are the HTTP body.
func Payload(n int) []byte {
	if b := bytesField(n); b != nil {
		return b
	}
	if b := bytesField(n - 2); b != nil {
		return protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), nil)
	}
	return bytes.Repeat([]byte{0}, n) // unreachable for n ≥ 2
}

// bytesField is field 1 holding bytes, n bytes in all, or nil.
func bytesField(n int) []byte {
	for l := n - 2; l >= 0; l-- {
		if 1+protowire.SizeVarint(uint64(l))+l == n {
			return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), bytes.Repeat([]byte{'z'}, l))
		}
	}
	return nil
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(60*time.Second), 3) // nanoseconds
}

func quantiles(h *hdrhistogram.Histogram, r *ClientResult) {
	us := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1e3 }
	r.P50Us, r.P99Us, r.P999Us = us(50), us(99), us(99.9)
	r.MaxUs = float64(h.Max()) / 1e3
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The GWIR client: one kernel UDP socket, requests and replies moved in
// batches with sendmmsg/recvmmsg, spinning while replies come and sleeping
// in poll(2) when idle. Each of the N slots has one request in flight; its
// request id is the slot index in the low 32 bits and a generation in the
// high 32 bits, so a late reply to a request already given up on is told
// apart and ignored.

const (
	gwirBatch    = 64
	gwirSpinIdle = 50 * time.Microsecond
)

type gwirSlot struct {
	gen    uint32
	sent   time.Duration // since the client's epoch
	buf    []byte        // the encoded request
	active bool
}

func runGWIRClient(ctx context.Context, cfg ClientConfig, out io.Writer) (ClientResult, error) {
	var res ClientResult
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return res, fmt.Errorf("bench client: address %q: %w", cfg.Addr, err)
	}
	fd, err := dialUDP(ap)
	if err != nil {
		return res, err
	}
	defer unix.Close(fd)
	payload := Payload(cfg.PayloadBytes)
	method := proto.MethodID(echo.EchoMethod)
	slots := make([]gwirSlot, cfg.Outstanding)
	for i := range slots {
		f, err := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), uint64(i), method, 0, payload)
		if err != nil {
			return res, fmt.Errorf("bench client: encoding a request: %w", err)
		}
		slots[i].buf = f
	}
	sendB, recvB := newMmsgBatch(gwirBatch), newMmsgBatch(gwirBatch)
	for i := range gwirBatch {
		recvB.set(i, make([]byte, 65536))
	}
	epoch := time.Now()
	now := func() time.Duration { return time.Since(epoch) }

	if err := waitGWIRReady(ctx, fd, slots[0].buf, cfg.ReadyTimeout); err != nil {
		return res, err
	}
	fmt.Fprintln(out, markerReady)

	pending := make([]int, 0, len(slots))
	issue := func(i int, t time.Duration) {
		s := &slots[i]
		s.gen++
		binary.BigEndian.PutUint64(s.buf[8:16], uint64(s.gen)<<32|uint64(i))
		s.sent, s.active = t, true
		pending = append(pending, i)
	}
	for i := range slots {
		issue(i, now())
	}
	hist := newHistogram()
	measuring := false
	warmEnd := now() + cfg.Warmup
	var measureEnd time.Duration // set when the window starts
	var cpuStart time.Duration
	lastActive, nextTimeoutScan := now(), now()+10*time.Millisecond
	wantLen := proto.HeaderLen + len(payload)
	pollFds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for iter := 0; ; iter++ {
		// Send what is pending.
		for len(pending) > 0 {
			k := min(len(pending), gwirBatch)
			for j := 0; j < k; j++ {
				sendB.set(j, slots[pending[j]].buf)
			}
			n, err := sendB.sendmmsg(fd, k)
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ECONNREFUSED) {
				return res, fmt.Errorf("bench client: sendmmsg: %w", err)
			}
			if n <= 0 {
				break // socket buffer full: retry after receiving
			}
			pending = pending[:copy(pending, pending[n:])]
		}
		n, err := recvB.recvmmsg(fd)
		if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ECONNREFUSED) {
			return res, fmt.Errorf("bench client: recvmmsg: %w", err)
		}
		t := now()
		for j := 0; j < n; j++ {
			buf := unsafeIovBytes(recvB, j)
			f, err := proto.Parse(buf)
			if err != nil {
				if measuring {
					res.Errors++
				}
				continue
			}
			id := f.RequestID()
			i := int(id & 0xffffffff)
			if i >= len(slots) || !slots[i].active || slots[i].gen != uint32(id>>32) {
				res.Stale++
				continue
			}
			if measuring {
				res.Requests++
				hist.RecordValue(int64(t - slots[i].sent))
				if f.Status() != proto.StatusOK || len(buf) != wantLen {
					res.Errors++
				}
			}
			issue(i, t)
		}
		if n > 0 {
			lastActive = t
		}
		if n > 0 && iter&63 != 0 {
			continue
		}
		// Bookkeeping at most every 64 busy passes or when idle.
		switch {
		case !measuring && t >= warmEnd:
			measuring = true
			cpuStart = cpuTime()
			fmt.Fprintln(out, markerMeasureStart)
			// The window starts now, however late: a starved client that
			// overran the warm-up still measures a whole window.
			warmEnd, measureEnd = t, t+cfg.Duration
		case measuring && t >= measureEnd:
			res.CPUSeconds = (cpuTime() - cpuStart).Seconds()
			res.WindowS = (t - warmEnd).Seconds()
			fmt.Fprintln(out, markerMeasureEnd)
			quantiles(hist, &res)
			return res, nil
		}
		if t >= nextTimeoutScan {
			nextTimeoutScan = t + 10*time.Millisecond
			if err := ctx.Err(); err != nil {
				return res, err
			}
			for i := range slots {
				if slots[i].active && t-slots[i].sent > cfg.Timeout && !inPending(pending, i) {
					if measuring {
						res.Errors++
						res.Timeouts++
					}
					issue(i, t)
				}
			}
		}
		if n == 0 && t-lastActive > gwirSpinIdle && len(pending) == 0 {
			unix.Poll(pollFds, 1)
		}
	}
}

func inPending(pending []int, i int) bool {
	for _, p := range pending {
		if p == i {
			return true
		}
	}
	return false
}

func dialUDP(ap netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("bench client: socket: %w", err)
	}
	for _, opt := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 4<<20)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bench client: connect %v: %w", ap, err)
	}
	return fd, nil
}

// waitGWIRReady sends req every 100 ms until any valid frame comes back.
func waitGWIRReady(ctx context.Context, fd int, req []byte, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	buf := make([]byte, 65536)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		unix.Send(fd, req, unix.MSG_DONTWAIT)
		if n, _ := unix.Poll(pfd, 100); n > 0 {
			for {
				m, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
				if err != nil {
					break
				}
				if _, err := proto.Parse(buf[:m]); err == nil {
					drain(fd, buf)
					return nil
				}
			}
		}
	}
	return fmt.Errorf("bench client: no answer from the server within %v", limit)
}

func drain(fd int, buf []byte) {
	time.Sleep(50 * time.Millisecond)
	for {
		if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
			return
		}
	}
}

// The HTTP client: a keep-alive Go client with N goroutines each doing
// POST /echo in a loop; per-goroutine histograms merged at the end.

func runHTTPClient(ctx context.Context, cfg ClientConfig, out io.Writer) (ClientResult, error) {
	var res ClientResult
	tr := &http.Transport{
		MaxIdleConns:        cfg.Outstanding,
		MaxIdleConnsPerHost: cfg.Outstanding,
		MaxConnsPerHost:     cfg.Outstanding,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}
	url := "http://" + cfg.Addr + "/echo"
	body := Payload(cfg.PayloadBytes)
	if err := waitHTTPReady(ctx, client, url, body, cfg.ReadyTimeout); err != nil {
		return res, err
	}
	fmt.Fprintln(out, markerReady)

	const (
		phaseWarm = iota
		phaseMeasure
		phaseDone
	)
	var phase atomic.Int32
	type worker struct {
		hist             *hdrhistogram.Histogram
		requests, errors int64
		timeouts         int64
	}
	workers := make([]worker, cfg.Outstanding)
	var wg sync.WaitGroup
	for w := range workers {
		workers[w].hist = newHistogram()
		wg.Add(1)
		go func(wk *worker) {
			defer wg.Done()
			buf := make([]byte, len(body)+64)
			for phase.Load() != phaseDone {
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/octet-stream")
				resp, err := client.Do(req)
				ok := false
				if err == nil {
					n, rerr := io.ReadFull(resp.Body, buf[:len(body)])
					extra, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == http.StatusOK && rerr == nil && n == len(body) && extra == 0
				}
				if phase.Load() != phaseMeasure {
					continue
				}
				wk.requests++
				wk.hist.RecordValue(int64(time.Since(start)))
				if !ok {
					wk.errors++
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						wk.timeouts++
					}
				}
			}
		}(&workers[w])
	}
	sleepCtx(ctx, cfg.Warmup)
	cpuStart, start := cpuTime(), time.Now()
	phase.Store(phaseMeasure)
	fmt.Fprintln(out, markerMeasureStart)
	sleepCtx(ctx, cfg.Duration)
	phase.Store(phaseDone)
	res.WindowS = time.Since(start).Seconds()
	res.CPUSeconds = (cpuTime() - cpuStart).Seconds()
	fmt.Fprintln(out, markerMeasureEnd)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	hist := newHistogram()
	for _, w := range workers {
		hist.Merge(w.hist)
		res.Requests += w.requests
		res.Errors += w.errors
		res.Timeouts += w.timeouts
	}
	quantiles(hist, &res)
	return res, nil
}

func waitHTTPReady(ctx context.Context, client *http.Client, url string, body []byte, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("bench client: no answer from %s within %v: %w", url, limit, last)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

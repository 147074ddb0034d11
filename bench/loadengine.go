package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	zr "github.com/zerohop/zerohop/runtime"
)

// The runtime-client load: zerohop's client engine drives the server, the
// way a zerohop service calls another. One goroutine keeps N calls
// outstanding with Client.Go on one Done channel; the engine's loop is
// pinned to the client core (ClientConfig.EngineCores). At N = 1 the
// goroutine makes synchronous Calls instead, as a handler calling another
// service does, which run on the engine's caller lanes (when calling by
// address). The engine retransmits by itself (its RTO follows the measured
// RTT): those copies are counted in Retransmits, and a call that fails
// after its last copy is an error and is started again.

func runEngineClient(ctx context.Context, cfg ClientConfig, out io.Writer) (ClientResult, error) {
	var res ClientResult
	var opts []zr.EngineOption
	if len(cfg.EngineCores) > 0 {
		opts = append(opts, zr.WithClientCores(cfg.EngineCores...))
	}
	eng, err := zr.NewEngine(opts...)
	if err != nil {
		return res, fmt.Errorf("bench runtime-client load: starting the engine: %w", err)
	}
	defer eng.Close()
	dialOpts := []zr.ClientOption{zr.WithEngine(eng)}
	if cfg.Identity != "" {
		sealer, err := engineSealer(cfg.Identity)
		if err != nil {
			return res, err
		}
		dialOpts = append(dialOpts, zr.WithClientSealer(sealer))
	}
	var client *zr.Client
	if cfg.Service != "" {
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(cfg.Addr); err != nil {
			return res, fmt.Errorf("bench runtime-client load: --addr %q: %w", cfg.Addr, err)
		}
		client, err = mesh.DialService(cfg.Service, static.New(zr.Endpoint{Addr: ap}), dialOpts...)
	} else {
		client, err = zr.Dial("udp", cfg.Addr, dialOpts...)
	}
	if err != nil {
		return res, fmt.Errorf("bench runtime-client load: dialling %s: %w", cfg.Addr, err)
	}
	defer client.Close()
	payload := Payload(cfg.PayloadBytes)
	if err := waitEngineReady(ctx, client, payload, cfg.ReadyTimeout); err != nil {
		return res, err
	}
	fmt.Fprintln(out, markerReady)
	res.LoadDetail = fmt.Sprintf("zerohop client engine, loop on core(s) %v; N = 1: synchronous Client.Call from one goroutine, "+
		"N > 1: N calls outstanding from one goroutine with Client.Go", cfg.EngineCores)
	if cfg.Service != "" {
		res.LoadDetail += ", by service name (mesh.DialService: p2c, health checks)"
	}

	epoch := time.Now()
	now := func() time.Duration { return time.Since(epoch) }
	if cfg.Outstanding == 1 {
		return runEngineCalls(ctx, cfg, client, payload, now, out, res)
	}
	// Calls carry no context that can end (that would cost an allocation
	// per call); ctx is checked on the ticker instead.
	callCtx := context.Background()
	done := make(chan *zr.Call, cfg.Outstanding)
	started := make(map[*zr.Call]time.Duration, 2*cfg.Outstanding)
	bufCap := len(payload) + 64
	issue := func(buf []byte, t time.Duration) {
		started[client.Go(callCtx, echo.EchoMethod, payload, buf, done)] = t
	}
	for range cfg.Outstanding {
		issue(make([]byte, 0, bufCap), now())
	}
	hist := newHistogram()
	win := newEngineWindow(cfg, out, now(), client, hist)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case call := <-done:
			t := now()
			sent, ok := started[call]
			delete(started, call)
			if win.measuring {
				res.Requests++
				if ok {
					hist.RecordValue(int64(t - sent))
				}
				if call.Err != nil || len(call.Reply.Payload) != len(payload) {
					res.Errors++
				}
			}
			buf := call.Reply.Payload[:0]
			if cap(buf) < bufCap {
				buf = make([]byte, 0, bufCap) // the reply was an error without our buffer
			}
			call.Release()
			issue(buf, t)
			if win.count == 0 || res.Requests < win.count {
				continue // the window moves on the ticker, or at the count
			}
		case <-tick.C:
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		if win.advance(now(), &res) {
			return res, nil
		}
	}
}

// runEngineCalls is the runtime-client load at N = 1: synchronous Calls,
// one after the other.
func runEngineCalls(ctx context.Context, cfg ClientConfig, client *zr.Client, payload []byte, now func() time.Duration,
	out io.Writer, res ClientResult) (ClientResult, error) {
	callCtx := context.Background() // as runEngineClient's: ctx is checked every 256 calls
	buf := make([]byte, 0, len(payload)+64)
	hist := newHistogram()
	win := newEngineWindow(cfg, out, now(), client, hist)
	for i := 0; ; i++ {
		sent := now()
		r, err := client.Call(callCtx, echo.EchoMethod, payload, buf)
		t := now()
		if win.measuring {
			res.Requests++
			hist.RecordValue(int64(t - sent))
			if err != nil || len(r.Payload) != len(payload) {
				res.Errors++
			}
		}
		if i&255 == 255 {
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		if win.advance(t, &res) {
			return res, nil
		}
	}
}

// engineWindow is a loadWindow that also takes the engine's retransmission
// and timeout counts over the window, and the latency quantiles at its end.
type engineWindow struct {
	loadWindow
	client *zr.Client
	hist   *hdrhistogram.Histogram
	before zr.ClientStats
}

func newEngineWindow(cfg ClientConfig, out io.Writer, now time.Duration, client *zr.Client, hist *hdrhistogram.Histogram) *engineWindow {
	return &engineWindow{loadWindow: loadWindow{out: out, start: now + cfg.Warmup, duration: cfg.Duration, count: cfg.Count},
		client: client, hist: hist}
}

// advance is loadWindow's, filling in res from the engine's counters when
// the window is over.
func (w *engineWindow) advance(t time.Duration, res *ClientResult) bool {
	wasMeasuring := w.measuring
	if w.loadWindow.advance(t, res) {
		after := w.client.Stats()
		res.Retransmits = int64(after.Retransmits - w.before.Retransmits)
		res.Timeouts = int64(after.Timeouts - w.before.Timeouts)
		quantiles(w.hist, res)
		return true
	}
	if w.measuring && !wasMeasuring {
		w.before = w.client.Stats()
	}
	return false
}

// waitEngineReady calls the echo method every 100 ms until one call
// succeeds.
func waitEngineReady(ctx context.Context, client *zr.Client, payload []byte, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	buf := make([]byte, 0, len(payload)+64)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := client.Call(cctx, echo.EchoMethod, payload, buf)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("bench runtime-client load: no answer from the server within %v: %w", limit, last)
}

package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// The runtime clients: zerohop's own client as the load, to compare a
// call by address (runtime.Dial, LoadDial) with a call by service name
// (mesh.DialService over a static resolver of the one address: p2c
// picking, health probes and outlier detection on, LoadDialService)
// against the same server in the same run. Outstanding calls are kept
// in flight with Client.Go; a call with no reply after the client's
// retransmissions counts as an error and is issued again.

// runRuntimeClient drives one load point through a runtime client.
func runRuntimeClient(ctx context.Context, cfg ClientConfig, out io.Writer, byService bool) (ClientResult, error) {
	var res ClientResult
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return res, fmt.Errorf("bench client: address %q: %w", cfg.Addr, err)
	}
	var c *runtime.Client
	if byService {
		c, err = mesh.DialService("zerohop.Echo", static.New(runtime.Endpoint{Addr: ap}))
	} else {
		c, err = runtime.Dial("udp", ap.String())
	}
	if err != nil {
		return res, fmt.Errorf("bench client: %w", err)
	}
	defer c.Close()
	payload := Payload(cfg.PayloadBytes)
	if err := waitRuntimeReady(ctx, c, payload, cfg.ReadyTimeout); err != nil {
		return res, err
	}
	fmt.Fprintln(out, markerReady)

	done := make(chan *runtime.Call, cfg.Outstanding)
	started := make(map[*runtime.Call]time.Time, 2*cfg.Outstanding)
	bufs := make(chan []byte, cfg.Outstanding)
	for range cfg.Outstanding {
		bufs <- make([]byte, 0, cfg.PayloadBytes+64)
	}
	bg := context.Background() // no per-call cancellation (it costs an allocation)
	issue := func(buf []byte) {
		t := time.Now()
		call := c.Go(bg, echo.EchoMethod, payload, buf, done)
		started[call] = t
	}
	for range cfg.Outstanding {
		issue(<-bufs)
	}
	hist := newHistogram()
	measuring := false
	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	var measureEnd time.Time
	var cpuStart time.Duration
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case call := <-done:
			now := time.Now()
			sent := started[call]
			delete(started, call)
			buf := call.Reply.Payload[:0]
			if measuring {
				res.Requests++
				hist.RecordValue(int64(now.Sub(sent)))
				if call.Err != nil || call.Reply.Status != proto.StatusOK || len(call.Reply.Payload) != len(payload) {
					res.Errors++
				}
			}
			call.Release()
			issue(buf)
		case <-tick.C:
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		now := time.Now()
		switch {
		case !measuring && !now.Before(warmEnd):
			measuring = true
			cpuStart = cpuTime()
			fmt.Fprintln(out, markerMeasureStart)
			warmEnd, measureEnd = now, now.Add(cfg.Duration)
		case measuring && !now.Before(measureEnd):
			res.CPUSeconds = (cpuTime() - cpuStart).Seconds()
			res.WindowS = now.Sub(warmEnd).Seconds()
			fmt.Fprintln(out, markerMeasureEnd)
			quantiles(hist, &res)
			return res, nil
		}
	}
}

// waitRuntimeReady calls until the server answers or limit passes.
func waitRuntimeReady(ctx context.Context, c *runtime.Client, payload []byte, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := c.Call(cctx, echo.EchoMethod, payload, nil)
		ccancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("bench client: the server did not answer within %v: %w", limit, err)
		}
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
	"golang.org/x/sys/unix"
)

// The sealed-frame variants. The bench's kernel-UDP load generator cannot
// seal, so both are driven by the runtime's client engine (LoadRuntime):
// zerohop-xsk-sealed with a ClientSealer against `serve --identity
// --require-sealed`, zerohop-xsk-rtclient without one against plain
// `serve`, so that the cost of sealing is the ratio of two variants with
// the same load generator (comparing with zerohop-xsk would mix in the
// difference between the two generators).
const (
	VariantXSKSealed   = "zerohop-xsk-sealed"
	VariantXSKRTClient = "zerohop-xsk-rtclient"

	// LoadRuntime drives a GWIR server with runtime.Client (one engine
	// loop pinned to the client's core, Go calls kept N outstanding),
	// sealing with ClientConfig.Identity when it is set.
	LoadRuntime = "gwir-runtime"
)

func init() {
	AllVariants = append(AllVariants, VariantXSKRTClient, VariantXSKSealed)
}

// benchIdentities writes a test CA's identity directories for the sealed
// variant's server and load into dir: what `serve --identity` and
// `bench-client --identity` read.
func benchIdentities(dir string) (server, client string, err error) {
	ca, err := identitytest.NewCA("bench.zerohop")
	if err != nil {
		return "", "", err
	}
	for _, d := range []struct {
		path *string
		name string
		id   string
	}{{&server, "server", "spiffe://bench.zerohop/ns/bench/sa/echo"}, {&client, "client", "spiffe://bench.zerohop/ns/bench/sa/load"}} {
		svid, err := ca.IssueFor(d.id, 24*time.Hour)
		if err != nil {
			return "", "", err
		}
		*d.path = filepath.Join(dir, "identity-"+d.name)
		if err := os.MkdirAll(*d.path, 0o700); err != nil {
			return "", "", err
		}
		if err := identitytest.WriteDir(*d.path, svid, ca); err != nil {
			return "", "", err
		}
	}
	return server, client, nil
}

// startSealedServers is startServers for the variants of this file; ok is
// false for any other variant.
func (h *harness) startSealedServers(name, gwirAddr string, cores, queues []int) (procs []*serverProc, load, addr, skip string, ok bool) {
	if name != VariantXSKSealed && name != VariantXSKRTClient {
		return nil, "", "", "", false
	}
	if h.topology == nil {
		if !h.root {
			return nil, "", "", "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF) for the veth topology and AF_XDP", true
		}
		return nil, "", "", "needs the veth topology (loopback run)", true
	}
	args := []string{"serve", "--addr", gwirAddr, "--queues", joinInts(queues), "--cores", joinInts(cores[:len(queues)]), "--backend", "xsk"}
	h.clientIdentity = ""
	if name == VariantXSKSealed {
		server, client, err := benchIdentities(h.tmp)
		if err != nil {
			return nil, "", "", "identities: " + err.Error(), true
		}
		args = append(args, "--identity", server, "--require-sealed")
		h.clientIdentity = client
	}
	if h.serverIface != "" {
		args = append(args, "--iface", h.serverIface)
	}
	if h.cfg.CPUProfileDir != "" {
		prof, _ := filepath.Abs(filepath.Join(h.cfg.CPUProfileDir, name+".pprof"))
		args = append([]string{"bench-server", "--kind", "zerohop", "--cpuprofile", prof, "--"}, args...)
	}
	p, err := h.start(h.server.command(cores, h.cfg.Exe, args...))
	if err != nil {
		return nil, "", "", err.Error(), true
	}
	return []*serverProc{p}, LoadRuntime, gwirAddr, "", true
}

// clientArgs are the bench-client flags a load kind needs beyond the
// common ones.
func (h *harness) clientArgs(load string) []string {
	if load == LoadRuntime && h.clientIdentity != "" {
		return []string{"--identity", h.clientIdentity}
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// firstCPU is the lowest CPU the calling thread may run on (the core the
// harness pinned the client to), or -1.
func firstCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return -1
	}
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			return i
		}
	}
	return -1
}

// runRuntimeClient is the LoadRuntime load: one runtime engine loop on the
// client's core, N calls outstanding through Client.Go, each reply's
// latency from the call's start, sealed when cfg.Identity names an
// identity directory. Replies must be OK and echo the payload.
func runRuntimeClient(ctx context.Context, cfg ClientConfig, out io.Writer) (ClientResult, error) {
	var res ClientResult
	engOpts := []runtime.EngineOption{runtime.WithClientLoops(1), runtime.WithEngineLogger(discardLogger())}
	if core := firstCPU(); core >= 0 {
		engOpts = append(engOpts, runtime.WithClientCores(core))
	}
	eng, err := runtime.NewEngine(engOpts...)
	if err != nil {
		return res, fmt.Errorf("bench client: %w", err)
	}
	defer eng.Close()
	// The runtime's own retransmission (RTT-based, 8 copies) stands for
	// the kernel generator's fixed --timeout resend.
	opts := []runtime.ClientOption{runtime.WithEngine(eng)}
	if cfg.Identity != "" {
		src, err := identity.LoadDir(cfg.Identity)
		if err != nil {
			return res, fmt.Errorf("bench client: %w", err)
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			return res, fmt.Errorf("bench client: %w", err)
		}
		table, err := identity.NewTable(identity.TableConfig{})
		if err != nil {
			return res, err
		}
		cl, err := identity.NewClient(&identity.Config{Source: src, Allow: identity.AllowTrustDomain(svid.ID.TrustDomain()),
			Table: table, Logger: discardLogger()})
		if err != nil {
			return res, fmt.Errorf("bench client: %w", err)
		}
		opts = append(opts, runtime.WithClientSealer(cl))
	}
	c, err := runtime.Dial("udp", cfg.Addr, opts...)
	if err != nil {
		return res, fmt.Errorf("bench client: %w", err)
	}
	defer c.Close()
	payload := Payload(cfg.PayloadBytes)

	// Ready: the first call answered (after the handshake, when sealed).
	readyBy := time.Now().Add(cfg.ReadyTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := c.Call(cctx, echo.EchoMethod, payload, nil)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if time.Now().After(readyBy) {
			return res, fmt.Errorf("bench client: no answer from %s within %v: %w", cfg.Addr, cfg.ReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(out, markerReady)

	epoch := time.Now()
	now := func() time.Duration { return time.Since(epoch) }
	done := make(chan *runtime.Call, cfg.Outstanding)
	starts := make(map[*runtime.Call]time.Duration, 2*cfg.Outstanding)
	bufs := make([][]byte, 0, cfg.Outstanding)
	for range cfg.Outstanding {
		bufs = append(bufs, make([]byte, 0, len(payload)+64))
	}
	issue := func() {
		b := bufs[len(bufs)-1]
		bufs = bufs[:len(bufs)-1]
		call := c.Go(ctx, echo.EchoMethod, payload, b, done)
		starts[call] = now()
	}
	for range cfg.Outstanding {
		issue()
	}
	hist := newHistogram()
	measuring := false
	warmEnd := now() + cfg.Warmup
	var measureEnd, cpuStart time.Duration
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case call := <-done:
			t := now()
			start, known := starts[call]
			delete(starts, call)
			if measuring && known {
				res.Requests++
				hist.RecordValue(int64(t - start))
				switch {
				case errors.Is(call.Err, runtime.ErrNoReply):
					res.Errors++
					res.Timeouts++
				case call.Err != nil || call.Reply.Status != proto.StatusOK || len(call.Reply.Payload) != len(payload):
					res.Errors++
				}
			}
			b := call.Reply.Payload[:0]
			if cap(b) == 0 { // a failed call gave no buffer back
				b = make([]byte, 0, len(payload)+64)
			}
			bufs = append(bufs, b)
			call.Release()
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			issue()
		case <-tick.C:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		t := now()
		switch {
		case !measuring && t >= warmEnd:
			measuring = true
			cpuStart = cpuTime()
			fmt.Fprintln(out, markerMeasureStart)
			warmEnd, measureEnd = t, t+cfg.Duration
		case measuring && t >= measureEnd:
			res.CPUSeconds = (cpuTime() - cpuStart).Seconds()
			res.WindowS = (t - warmEnd).Seconds()
			fmt.Fprintln(out, markerMeasureEnd)
			quantiles(hist, &res)
			return res, nil
		}
	}
}

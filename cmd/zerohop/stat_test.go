package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/telemetry"
	"github.com/zerohop/zerohop/runtime"
)

// stat without a reachable admin endpoint reads the XDP maps: pinned
// (--dir), or found through the interface by id (--iface): the counters
// move with the calls made, the service and an ACL rule added from
// outside show.
func TestStatReadsMapsWithoutAdmin(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, 7000)
	var srv *runtime.Server
	if err := link.A.Host.Do(func() (err error) {
		srv, err = runtime.Listen("udp", addr.String(), runtime.WithBackend(runtime.BackendXSK), runtime.WithPinnedMaps(),
			runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	callEchoIn(t, link.B.Host, addr, 50)
	maps, err := bpf.OpenPinned(bpf.PinDir(link.A.Iface))
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	if err := maps.AddACLRule(bpf.ACLRule{Source: netip.MustParsePrefix("192.0.2.0/24"), Port: 7000, Action: bpf.Deny}); err != nil {
		t.Fatal(err)
	}
	check := func(how string, rep telemetry.StatReport) {
		t.Helper()
		x := rep.XDP
		if x == nil || rep.Server != nil {
			t.Fatalf("%s: want an XDP-only report, got %+v", how, rep)
		}
		if x.Counters.Redirected < 50 || x.Counters.Seen < x.Counters.Redirected {
			t.Errorf("%s: counters %+v, want ≥ 50 redirected", how, x.Counters)
		}
		if len(x.Services) != 1 || x.Services[0].Port != 7000 {
			t.Errorf("%s: services %+v", how, x.Services)
		}
		if len(x.ACL) != 1 || x.ACL[0].Source != "192.0.2.0/24" || x.ACL[0].Action != "deny" {
			t.Errorf("%s: acl %+v", how, x.ACL)
		}
	}

	var out, errOut bytes.Buffer
	if code := stat(&out, &errOut, []string{"--dir", bpf.PinDir(link.A.Iface), "--json"}); code != 0 {
		t.Fatalf("stat --dir exited %d: %s", code, errOut.String())
	}
	check("--dir", decodeStat(t, out.Bytes()))

	// No admin endpoint at that name: the maps by id, from the server's
	// network namespace, with a note on stderr.
	out.Reset()
	errOut.Reset()
	code := 0
	link.A.Host.Do(func() error {
		code = stat(&out, &errOut, []string{"--iface", link.A.Iface, "--admin", "unix:@zerohop/admin/nobody-here", "--json"})
		return nil
	})
	if code != 0 {
		t.Fatalf("stat --iface exited %d: %s", code, errOut.String())
	}
	check("--iface", decodeStat(t, out.Bytes()))
	if !strings.Contains(errOut.String(), "showing the XDP maps of "+link.A.Iface+" only") {
		t.Errorf("no note of the fallback: %q", errOut.String())
	}
	out.Reset()
	if code := stat(&out, &errOut, []string{"--dir", bpf.PinDir(link.A.Iface)}); code != 0 || !strings.Contains(out.String(), "redirected to AF_XDP") {
		t.Errorf("table output (exit %d):\n%s", code, out.String())
	}
}

func callEchoIn(t *testing.T, h *topo.Host, addr netip.AddrPort, n int) {
	t.Helper()
	var c *runtime.Client
	if err := h.Do(func() (err error) {
		// A timeout above any round trip on a busy machine: the counts
		// below must be exact, so no call may be sent twice.
		c, err = runtime.Dial("udp", addr.String(), runtime.WithMinRTO(time.Second),
			runtime.WithRetransmission(time.Second, time.Second, 8))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := c.Call(ctx, echo.EchoMethod, []byte{8, byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func decodeStat(t *testing.T, b []byte) telemetry.StatReport {
	t.Helper()
	var rep telemetry.StatReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return rep
}

// startServeProcess runs `zerohop serve ARGS` (this test binary acting as
// zerohop) in h's namespace through `ip netns exec`, so in a mount
// namespace of its own, stopped in cleanup.
func startServeProcess(t *testing.T, h *topo.Host, args ...string) *exec.Cmd {
	t.Helper()
	cmd := h.Command(context.Background(), os.Args[0], append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serve output:\n%s", logs.String())
		}
	})
	return cmd
}

// zerohopIn runs `zerohop ARGS` in h's namespace, through its own `ip
// netns exec` (another mount namespace than the server's).
func zerohopIn(t *testing.T, h *topo.Host, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := h.Command(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		code = -1
	}
	return out.String(), errOut.String(), code
}

// TestStatOverAdminAcrossMountNamespaces: the server runs under one `ip
// netns exec`, `zerohop stat` under another (each its own mount namespace,
// so no pin and no file is shared) and finds the server's abstract admin
// socket without being told: loops, methods, XDP counters and services.
func TestStatOverAdminAcrossMountNamespaces(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, 7100)
	startServeProcess(t, link.A.Host, "--addr", addr.String(), "--backend", "xsk", "--iface", link.A.Iface)
	var rep telemetry.StatReport
	var stderr string
	for i := 0; i < 100; i++ { // bounded: the server starts within ~10 s
		var out string
		var code int
		out, stderr, code = zerohopIn(t, link.A.Host, "stat", "--json")
		if code == 0 {
			rep = decodeStat(t, []byte(out))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rep.Server == nil {
		t.Fatalf("stat never reached the server: %s", stderr)
	}
	const calls = 40
	callEchoIn(t, link.B.Host, addr, calls)
	out, stderr, code := zerohopIn(t, link.A.Host, "stat", "--json")
	if code != 0 {
		t.Fatalf("stat exited %d: %s", code, stderr)
	}
	rep = decodeStat(t, []byte(out))
	if rep.Server.Addr != addr.String() || rep.Server.Backend != "xsk" || len(rep.Server.Loops) == 0 {
		t.Errorf("server section %+v", rep.Server)
	}
	var echoCalls uint64
	for _, m := range rep.Server.Methods {
		if m.Method == echo.EchoMethod {
			echoCalls = m.Statuses["OK"]
		}
	}
	if echoCalls != calls {
		t.Errorf("stat says %d OK echo calls, want %d", echoCalls, calls)
	}
	if rep.Server.Total.Served["xsk"] != calls {
		t.Errorf("served by path %v, want %d on xsk", rep.Server.Total.Served, calls)
	}
	if rep.XDP == nil || rep.XDP.Iface != link.A.Iface || rep.XDP.Counters.Redirected < calls {
		t.Fatalf("XDP section %+v, want ≥ %d redirected on %s", rep.XDP, calls, link.A.Iface)
	}
	if len(rep.XDP.Services) != 1 || rep.XDP.Services[0].Port != 7100 || len(rep.XDP.Slots) != 1 {
		t.Errorf("services %+v slots %+v", rep.XDP.Services, rep.XDP.Slots)
	}
	out, _, code = zerohopIn(t, link.A.Host, "stat")
	for _, want := range []string{"server " + addr.String(), echo.EchoMethod, "redirected to AF_XDP", "XDP on " + link.A.Iface} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("table (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
}

func TestStatWithoutServer(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	var out, errOut bytes.Buffer
	code := 0
	// A fresh network namespace has no admin socket.
	link.A.Host.Do(func() error { code = stat(&out, &errOut, nil); return nil })
	if code != 1 || !strings.Contains(errOut.String(), "no zerohop admin socket") || !strings.Contains(errOut.String(), "--iface") {
		t.Errorf("no server: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	link.A.Host.Do(func() error { code = stat(&out, &errOut, []string{"--iface", link.A.Iface}); return nil })
	if code != 1 || !strings.Contains(errOut.String(), link.A.Iface) {
		t.Errorf("no XDP program: exit %d, %q", code, errOut.String())
	}
	// Usage errors (exit 2) are checked for every command in cli_test.go.
}

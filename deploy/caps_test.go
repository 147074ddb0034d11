package deploy

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
)

func TestMain(m *testing.M) { leak.Main(m) }

// The recipes' capability set is exactly what the AF_XDP backend needs: as
// an unprivileged user (nobody) holding xskCaps as ambient capabilities,
// `zerohop serve --backend xsk` serves a call from another namespace; with
// any one of them taken away it fails to start.
func TestCapabilitiesAreExactlyNeeded(t *testing.T) {
	setpriv := requireTool(t, "setpriv", "util-linux")
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	bin := buildZerohop(t)
	addr := link.A.Addr4.String() + ":7000"
	serve := func(caps []string) *exec.Cmd {
		set := "-all"
		for _, c := range caps {
			set += ",+" + strings.ToLower(c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return link.A.Host.Command(ctx, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set,
			bin, "serve", "--addr", addr, "--iface", link.A.Iface, "--backend", "xsk")
	}

	t.Run("all", func(t *testing.T) {
		cmd := serve(xskCaps)
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		var out []byte
		var err error
		for i := 0; i < 50; i++ { // the server may not serve yet: a bounded retry
			out, err = link.B.Host.Command(context.Background(), bin, "call", "--addr", addr, "--timeout", "500ms",
				"zerohop.Echo/Sum", "--field", "1=40", "--field", "1=2").CombinedOutput()
			if err == nil {
				break
			}
		}
		if err != nil || !strings.Contains(string(out), "field 1 varint 42") {
			t.Fatalf("call with %v: %v\n%s\nserver:\n%s", xskCaps, err, out, logs.String())
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil || !strings.Contains(logs.String(), "backend=xsk") {
			t.Errorf("server: %v\n%s", err, logs.String())
		}
	})
	for _, missing := range xskCaps {
		t.Run("without_"+missing, func(t *testing.T) {
			caps := slices.DeleteFunc(slices.Clone(xskCaps), func(c string) bool { return c == missing })
			out, err := serve(caps).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "XSK backend forced but unavailable") {
				t.Errorf("without CAP_%s: %v\n%s; want exit 1, XSK unavailable", missing, err, out)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/runtime"
)

// stat reads the pinned maps of a running XSK server: the counters move
// with the calls made, the service and an ACL rule added from outside show.
func TestStatReadsPinnedMaps(t *testing.T) {
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
	var c *runtime.Client
	if err := link.B.Host.Do(func() (err error) {
		c, err = runtime.Dial("udp", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		if _, err := c.Call(ctx, echo.EchoMethod, []byte{8, byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	maps, err := bpf.OpenPinned(bpf.PinDir(link.A.Iface))
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	if err := maps.AddACLRule(bpf.ACLRule{Source: netip.MustParsePrefix("192.0.2.0/24"), Port: 7000, Action: bpf.Deny}); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := stat(&out, &errOut, []string{"--iface", link.A.Iface, "--json"}); code != 0 {
		t.Fatalf("stat exited %d: %s", code, errOut.String())
	}
	var rep statReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Counters.Redirected < 50 || rep.Counters.Seen < rep.Counters.Redirected {
		t.Errorf("counters %+v, want ≥ 50 redirected", rep.Counters)
	}
	if len(rep.Services) != 1 || rep.Services[0].Port != 7000 {
		t.Errorf("services %+v", rep.Services)
	}
	if len(rep.ACL) != 1 || rep.ACL[0].Source != "192.0.2.0/24" || rep.ACL[0].Action != "deny" {
		t.Errorf("acl %+v", rep.ACL)
	}

	out.Reset()
	if code := stat(&out, &errOut, []string{"--iface", link.A.Iface}); code != 0 || !strings.Contains(out.String(), "redirected to AF_XDP") {
		t.Errorf("table output (exit %d):\n%s", code, out.String())
	}
}

func TestStatWithoutServer(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := stat(&out, &errOut, []string{"--iface", "zh-no-server"}); code != 1 || !strings.Contains(errOut.String(), "--pin-maps") {
		t.Errorf("exit %d, %q", code, errOut.String())
	}
	if code := stat(&out, &errOut, nil); code != 2 {
		t.Errorf("no flags: exit %d, want 2", code)
	}
}

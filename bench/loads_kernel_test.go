package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
)

// Smoke tests of the new loads and the gnet variant between two
// namespaces: a bounded number of requests (ClientConfig.Count, or a short
// window for the kernel client), checked for completeness and errors,
// never for speed.

// serveIn runs serve inside h's namespace until the test ends.
func serveIn(t *testing.T, h *topo.Host, serve func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := h.Go(func() error { return serve(ctx) })
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
}

// runLoad runs one load point inside h's namespace and returns its result
// after checking the markers it printed.
func runLoad(t *testing.T, h *topo.Host, cfg ClientConfig) ClientResult {
	t.Helper()
	var out bytes.Buffer
	if err := h.Do(func() error { return RunClient(context.Background(), cfg, &out) }); err != nil {
		t.Fatalf("%s load: %v\n%s", cfg.Kind, err, out.String())
	}
	var lines []string
	for sc := bufio.NewScanner(&out); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 4 || lines[0] != markerReady || lines[1] != markerMeasureStart || lines[2] != markerMeasureEnd {
		t.Fatalf("%s load printed %q, want ready, measure-start, measure-end, JSON", cfg.Kind, lines)
	}
	var res ClientResult
	if err := json.Unmarshal([]byte(lines[3]), &res); err != nil {
		t.Fatalf("%s load's result %q: %v", cfg.Kind, lines[3], err)
	}
	return res
}

func xskLoadConfig(link *topo.Link, n int, count int64) ClientConfig {
	return ClientConfig{Kind: LoadXSK, Addr: netip.AddrPortFrom(link.A.Addr4, gwirPort).String(), Outstanding: n,
		Duration: time.Minute, Count: count, PayloadBytes: 64,
		Iface: link.B.Iface, Src: netip.AddrPortFrom(link.B.Addr4, xskLoadPort).String(), DstMAC: link.A.MAC.String()}
}

// noXDPLeft checks that the XSK load left the client's veth as it found it.
func noXDPLeft(t *testing.T, link *topo.Link) {
	t.Helper()
	var att bpf.Attachment
	if err := link.B.Host.Do(func() (err error) { att, err = bpf.Inspect(link.B.Iface); return err }); err != nil {
		t.Fatal(err)
	}
	if att.ProgramID != 0 {
		t.Errorf("after the load, %s still has XDP program %d (%s) attached", link.B.Iface, att.ProgramID, att.Name)
	}
}

func TestXSKLoadAgainstNetUDP(t *testing.T) {
	topo.RequireRoot(t)
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, gwirPort).String()
	serveIn(t, link.A.Host, func(ctx context.Context) error { return ServeNetUDP(ctx, addr) })
	const count = 3000
	res := runLoad(t, link.B.Host, xskLoadConfig(link, 16, count))
	if res.Requests < count || res.Errors != 0 || res.KernelPath != 0 || res.P50Us <= 0 || res.MaxUs < res.P50Us {
		t.Errorf("result %+v: want ≥ %d requests, no errors, none through the kernel, latencies", res, count)
	}
	if !strings.Contains(res.LoadDetail, "AF_XDP load on "+link.B.Iface) {
		t.Errorf("load detail %q", res.LoadDetail)
	}
	noXDPLeft(t, link)
}

// lossyEcho answers GWIR requests like ServeNetUDP but ignores every
// fifth one, so the load must resend.
func lossyEcho(ctx context.Context, addr string) error {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	in, out := make([]byte, 2048), make([]byte, 2048)
	for seen := 0; ; seen++ {
		n, from, err := conn.ReadFrom(in)
		if err != nil {
			return nil
		}
		f, err := proto.Parse(in[:n])
		if err != nil || seen%5 == 4 {
			continue
		}
		if reply, err := proto.EncodeResponse(out, f.RequestID(), f.MethodID(), proto.StatusOK, f.Payload()); err == nil {
			conn.WriteTo(reply, from)
		}
	}
}

func TestXSKLoadResendsWhatGetsNoReply(t *testing.T) {
	topo.RequireRoot(t)
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, gwirPort).String()
	serveIn(t, link.A.Host, func(ctx context.Context) error { return lossyEcho(ctx, addr) })
	cfg := xskLoadConfig(link, 8, 500)
	cfg.Timeout = 20 * time.Millisecond
	res := runLoad(t, link.B.Host, cfg)
	if res.Requests < 500 || res.Timeouts == 0 || res.Retransmits != res.Timeouts || res.Errors != res.Timeouts {
		t.Errorf("result %+v: want ≥ 500 replies, timeouts (a fifth of the requests were ignored), each resent and counted as an error", res)
	}
	noXDPLeft(t, link)
}

func TestEngineLoadAgainstNetUDP(t *testing.T) {
	topo.RequireRoot(t)
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, gwirPort).String()
	serveIn(t, link.A.Host, func(ctx context.Context) error { return ServeNetUDP(ctx, addr) })
	const count = 3000
	res := runLoad(t, link.B.Host, ClientConfig{Kind: LoadEngine, Addr: addr, Outstanding: 16,
		Duration: time.Minute, Count: count, PayloadBytes: 64})
	if res.Requests < count || res.Errors != 0 || res.P50Us <= 0 || !strings.Contains(res.LoadDetail, "client engine") {
		t.Errorf("result %+v: want ≥ %d requests, no errors", res, count)
	}
}

func TestGnetEchoesGWIR(t *testing.T) {
	topo.RequireRoot(t)
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, gwirPort)
	serveIn(t, link.A.Host, func(ctx context.Context) error { return ServeGnet(ctx, addr.String()) })

	// Under both GWIR loads.
	res := runLoad(t, link.B.Host, ClientConfig{Kind: LoadGWIR, Addr: addr.String(), Outstanding: 8,
		Duration: 300 * time.Millisecond, PayloadBytes: 64})
	if res.Requests == 0 || res.Errors != 0 {
		t.Errorf("kernel-UDP load: %+v", res)
	}
	res = runLoad(t, link.B.Host, xskLoadConfig(link, 8, 2000))
	if res.Requests < 2000 || res.Errors != 0 {
		t.Errorf("XSK load: %+v", res)
	}

	// What it answers: a valid request with its payload and id, nothing
	// for a datagram that is not a GWIR request.
	err := link.B.Host.Do(func() error {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer conn.Close()
		payload := Payload(32)
		req, _ := proto.EncodeRequest(make([]byte, 128), 4242, proto.MethodID(echo.EchoMethod), 0, payload)
		pong, _ := proto.EncodePong(make([]byte, 64), 4141, proto.PongServing)
		for _, junk := range [][]byte{[]byte("not GWIR at all"), pong} {
			conn.Write(junk)
		}
		conn.Write(req)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // a bound, not a measurement
		in := make([]byte, 2048)
		n, err := conn.Read(in)
		if err != nil {
			t.Errorf("no reply to a valid request: %v", err)
			return nil
		}
		f, err := proto.Parse(in[:n])
		if err != nil || f.Kind() != proto.KindResponse || f.RequestID() != 4242 || f.Status() != proto.StatusOK ||
			!bytes.Equal(f.Payload(), payload) {
			t.Errorf("reply % x: %v", in[:n], err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package runtime_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
	zr "github.com/zerohop/zerohop/runtime"
)

const xskPort = 7000

// peerModes are the two kinds of kernel peer every test of the XSK
// backend meets: TX checksum offload on (veth's default, and what a pod on
// the same node sends: only the pseudo-header sum in the UDP checksum,
// CHECKSUM_PARTIAL) and off (full checksums, as a NIC delivers them).
var peerModes = []struct {
	name    string
	offload bool
}{{"offload-on", true}, {"offload-off", false}}

// forEachPeer runs fn as a subtest per peer mode.
func forEachPeer(t *testing.T, fn func(t *testing.T, offload bool)) {
	for _, m := range peerModes {
		t.Run(m.name, func(t *testing.T) { fn(t, m.offload) })
	}
}

// xskPair builds a namespace pair and serves on the XSK backend in the
// first. offload leaves TX checksum offload on on both veths (the kernel
// client then sends partial checksums); without it the client's kernel
// fills full UDP checksums, as a NIC would deliver them.
func xskPair(t *testing.T, offload bool, queues int, opts ...zr.Option) (*topo.Link, *zr.Server, *blockGate) {
	t.Helper()
	link := topo.Pair(t, topo.Config{Queues: queues, TxChecksumOff: !offload, XPS: queues > 1})
	addr := netip.AddrPortFrom(link.A.Addr4, xskPort).String()
	opts = append([]zr.Option{zr.WithInterface(link.A.Iface), zr.WithBackend(zr.BackendXSK)}, opts...)
	srv, gate := testServerIn(t, link.A.Host.Do, addr, opts...)
	return link, srv, gate
}

func kernelClientIn(t *testing.T, h *topo.Host, to netip.AddrPort) *kernelClient {
	t.Helper()
	var c *kernelClient
	if err := h.Do(func() error { c = dialKernel(t, to); return nil }); err != nil {
		t.Fatal(err)
	}
	return c
}

func xdpAttached(t *testing.T, h *topo.Host, iface string) bool {
	t.Helper()
	out, err := h.Command(t.Context(), "ip", "-d", "link", "show", "dev", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show %s: %v: %s", iface, err, out)
	}
	return strings.Contains(string(out), "prog/xdp")
}

func TestXSKBackendServesKernelClient(t *testing.T) { forEachPeer(t, testXSKServesKernelClient) }

func testXSKServesKernelClient(t *testing.T, offload bool) {
	link, srv, gate := xskPair(t, offload, 1)
	if srv.Backend() != zr.BackendXSK {
		t.Fatalf("backend %v: %s", srv.Backend(), srv.BackendReason())
	}
	if !xdpAttached(t, link.A.Host, link.A.Iface) {
		t.Fatal("no XDP program on the server interface while serving")
	}
	c := kernelClientIn(t, link.B.Host, srv.Addr())
	exerciseService(t, srv, c, gate)
	st := srv.Stats()
	if st.Total.RX == 0 || st.Total.TX == 0 || st.Total.Kicks == 0 {
		t.Fatalf("stats: rx %d tx %d kicks %d", st.Total.RX, st.Total.TX, st.Total.Kicks)
	}
	// A peer with offload on sends partial checksums, which a veth never
	// completes: they are accepted and counted; one with offload off
	// sends none. Either way nothing is dropped for its checksum.
	if partial := st.Total.PartialChecksum; (partial > 0) != offload || st.Total.Dropped["checksum"] != 0 {
		t.Errorf("offload %v: partial checksums %d, checksum drops %d", offload, partial, st.Total.Dropped["checksum"])
	}
	// Replies carry checksums the kernel accepts. InErrors also counts
	// replies to the garbage barrage that overflowed the client's socket
	// buffer (RcvbufErrors); anything beyond those is an error.
	csum, err1 := link.B.Host.Netstat("Udp", "InCsumErrors")
	inErr, err2 := link.B.Host.Netstat("Udp", "InErrors")
	rcvbuf, err3 := link.B.Host.Netstat("Udp", "RcvbufErrors")
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if csum != 0 || inErr != rcvbuf {
		t.Errorf("client Udp InCsumErrors %d, InErrors %d, RcvbufErrors %d", csum, inErr, rcvbuf)
	}
}

func TestXSKBackendAutoPicksXSKAndCleansUp(t *testing.T) { forEachPeer(t, testXSKAutoCleansUp) }

func testXSKAutoCleansUp(t *testing.T, offload bool) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: !offload})
	addr := netip.AddrPortFrom(link.A.Addr4, xskPort).String()
	var srv *zr.Server
	if err := link.A.Host.Do(func() (err error) {
		srv, err = zr.Listen("udp", addr, zr.WithPinnedMaps(), zr.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if srv.Backend() != zr.BackendXSK {
		t.Fatalf("auto picked %v: %s", srv.Backend(), srv.BackendReason())
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := kernelClientIn(t, link.B.Host, srv.Addr())
	if f := c.call(1, echo.EchoMethod, []byte("\x08\x2a")); string(f.Payload()) != "\x08\x2a" {
		t.Fatalf("echo % x", f.Payload())
	}
	pins := bpf.PinDir(link.A.Iface)
	if !exists(pins) {
		t.Fatalf("maps not pinned at %s", pins)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if xdpAttached(t, link.A.Host, link.A.Iface) {
		t.Fatal("XDP program still attached after Shutdown")
	}
	if exists(pins) {
		t.Fatalf("pins left at %s after Shutdown", pins)
	}
	if n := leak.Goroutines(loopGoroutine); n != 0 {
		t.Fatalf("%d loops left", n)
	}
}

func TestXSKBackendTwoQueues(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to steer two queues with XPS")
	}
	forEachPeer(t, testXSKTwoQueues)
}

func testXSKTwoQueues(t *testing.T, offload bool) {
	link, srv, _ := xskPair(t, offload, 2, zr.WithQueues(0, 1), zr.WithCores(0, 1))
	// One sender pinned to each CPU: XPS puts CPU i's traffic on TX queue
	// i, which arrives on the server's RX queue i.
	for cpu := 0; cpu < 2; cpu++ {
		errc := link.B.Host.Go(func() error {
			restore, err := pinThread(cpu)
			if err != nil {
				return err
			}
			defer restore()
			c := dialKernel(t, srv.Addr())
			for i := 0; i < 50; i++ {
				id := uint64(cpu*1000 + i)
				if f := c.call(id, echo.EchoMethod, []byte{8, byte(i)}); f.Payload()[1] != byte(i) {
					t.Errorf("cpu %d call %d: payload % x", cpu, i, f.Payload())
				}
			}
			return nil
		})
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	st := srv.Stats()
	if len(st.Loops) != 2 {
		t.Fatalf("%d loops", len(st.Loops))
	}
	for _, l := range st.Loops {
		if l.RX < 50 || l.TX < 50 {
			t.Errorf("queue %d (core %d): rx %d tx %d, want ≥ 50 each", l.Queue, l.Core, l.RX, l.TX)
		}
	}
}

func TestXSKBackendSurvivesInjectedLoss(t *testing.T) { forEachPeer(t, testXSKInjectedLoss) }

func testXSKInjectedLoss(t *testing.T, offload bool) {
	link, srv, _ := xskPair(t, offload, 1, zr.WithPinnedMaps())
	maps := lossyMaps(t, link.A.Iface)
	c := kernelClientIn(t, link.B.Host, srv.Addr())
	c.rto = 50 * time.Millisecond
	for i := 0; i < 200; i++ {
		if got := firstVarint(t, c.call(uint64(i), echo.SumMethod, sumPayload(uint64(i), 1))); got != uint64(i)+1 {
			t.Fatalf("call %d: sum %d", i, got)
		}
	}
	cnt, err := maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.LossDropped == 0 {
		t.Fatalf("loss knob dropped nothing: %+v", cnt)
	}
	t.Logf("200 calls completed through %d injected drops", cnt.LossDropped)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// The XSK backend serves IPv6 too: the steering program and netstack
// handle the IPv6 header, neighbour discovery stays with the kernel.
func TestXSKBackendIPv6(t *testing.T) { forEachPeer(t, testXSKIPv6) }

func testXSKIPv6(t *testing.T, offload bool) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: !offload})
	addr := netip.AddrPortFrom(link.A.Addr6, xskPort).String()
	srv, _ := testServerIn(t, link.A.Host.Do, addr, zr.WithInterface(link.A.Iface), zr.WithBackend(zr.BackendXSK))
	c := kernelClientIn(t, link.B.Host, srv.Addr())
	for i := 0; i < 100; i++ {
		if got := firstVarint(t, c.call(uint64(i), echo.SumMethod, sumPayload(uint64(i), 2))); got != uint64(i)+2 {
			t.Fatalf("call %d: sum %d", i, got)
		}
	}
	if st := srv.Stats().Total; st.RX < 100 || st.TX < 100 {
		t.Fatalf("the XSK loop did not serve the calls: rx %d tx %d", st.RX, st.TX)
	}
	if csum, err := link.B.Host.Netstat("Udp6", "InCsumErrors"); err != nil || csum != 0 {
		t.Fatalf("client Udp6 InCsumErrors %d (%v)", csum, err)
	}
	if in, err := link.B.Host.Netstat("Udp6", "InDatagrams"); err != nil || in < 100 {
		t.Fatalf("client Udp6 InDatagrams %d (%v): replies did not arrive over IPv6", in, err)
	}
}

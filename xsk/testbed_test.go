package xsk

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
)

func TestMain(m *testing.M) { leak.Main(m) }

// AttachSteering attaches zerohop's real XDP steering program (package bpf)
// to e's interface inside e's namespace, registers a UDP service on port and
// returns the program's XSKMAP (for Socket.Register) and the attach mode.
// It registers its own cleanup and fails t on error.
//
// Package xsk must not import bpf, not even from its internal tests (bpf
// may come to import xsk, and the test binary would then hold an import
// cycle), so the external test package sets this from its init
// (steer_test.go): both packages link into one test binary and every init
// runs before TestMain.
var AttachSteering func(t testing.TB, e topo.Endpoint, port uint16) (xsks XSKMap, mode string)

// testbed is a namespace pair whose side A runs the steering program with
// a service on testPort: UDP to testPort goes to the socket registered for
// the receive queue (XDP_PASS when none is); everything else passes.
type testbed struct {
	link       *topo.Link
	xsks       XSKMap
	port       uint16
	attachMode string
}

const testPort = 7777

// Exported for the external test package; they exist only in test builds.
var (
	Payloads     = payloads
	SameMultiset = sameMultiset
	UDPPayload   = udpPayload
)

func newTestbed(t testing.TB, cfg topo.Config) *testbed {
	t.Helper()
	if AttachSteering == nil {
		t.Fatal("xsk tests: AttachSteering is not set (steer_test.go of package xsk_test sets it)")
	}
	l := topo.Pair(t, cfg)
	tb := &testbed{link: l, port: testPort}
	// Static neighbours: no ARP round trip delays the first packets.
	for _, e := range []struct{ on, peer topo.Endpoint }{{l.A, l.B}, {l.B, l.A}} {
		out, err := e.on.Host.Command(context.Background(), "ip", "neigh", "replace", e.peer.Addr4.String(),
			"lladdr", e.peer.MAC.String(), "dev", e.on.Iface, "nud", "permanent").CombinedOutput()
		if err != nil {
			t.Fatalf("ip neigh replace in %s: %v: %s", e.on.Host.Name, err, out)
		}
	}
	tb.xsks, tb.attachMode = AttachSteering(t, l.A, tb.port)
	t.Logf("XDP attach mode: %s", tb.attachMode)
	return tb
}

// checkNoMappings registers, first, a cleanup that runs after every other
// cleanup of the test and fails it if any ring or UMEM mapping survived.
func checkNoMappings(t *testing.T) {
	t.Cleanup(func() {
		if n := mappings.Load(); n != 0 {
			t.Errorf("%d xsk mappings still live after close", n)
		}
		maps, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Errorf("reading /proc/self/maps: %v", err)
			return
		}
		for _, line := range strings.Split(string(maps), "\n") {
			if strings.Contains(line, "socket:[") {
				t.Errorf("socket mapping left behind: %s", line)
			}
		}
	})
}

// openUMEM maps a UMEM that the test closes (after its sockets).
func openUMEM(t *testing.T, cfg UMEMConfig) *UMEM {
	t.Helper()
	u, err := NewUMEM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("closing UMEM: %v", err)
		}
	})
	return u
}

// openSocket opens a socket in A's namespace, registers it in the XSKMAP
// and checks its accounting before closing it.
func (tb *testbed) openSocket(t *testing.T, u *UMEM, queue int, cfg SocketConfig) *Socket {
	t.Helper()
	var s *Socket
	if err := tb.link.A.Host.Do(func() (err error) {
		s, err = u.Open(tb.link.A.Ifindex, queue, cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing socket: %v", err)
		}
	})
	t.Cleanup(func() {
		if err := s.CheckAccounting(); err != nil {
			t.Errorf("after test: %v", err)
		}
	})
	if err := s.Register(tb.xsks); err != nil {
		t.Fatal(err)
	}
	t.Logf("queue %d bound: zero-copy %v, shared UMEM %v, bind EBUSY retries %d", queue, s.ZeroCopy(), s.SharedUMEM(), s.Counters().BindBusyRetries)
	return s
}

// sendUDP sends each payload in its own datagram from a kernel UDP socket
// in B's namespace to A's address and the test port. With cpu >= 0 the
// sending thread is pinned to that CPU (so XPS picks TX queue cpu).
func (tb *testbed) sendUDP(payloads [][]byte, cpu int) error {
	return tb.link.B.Host.Do(func() error {
		if cpu >= 0 {
			var orig, set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &orig); err != nil {
				return err
			}
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return fmt.Errorf("pinning sender to CPU %d: %w", cpu, err)
			}
			defer unix.SchedSetaffinity(0, &orig)
		}
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tb.link.A.Addr4, tb.port)))
		if err != nil {
			return err
		}
		defer c.Close()
		for i, p := range payloads {
			if _, err := c.Write(p); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			if i%64 == 63 {
				runtime.Gosched() // let the receiver keep up on 2 shared cores
			}
		}
		return nil
	})
}

// udpPayload decodes an Ethernet frame with gopacket and returns its UDP
// payload, or an error if it is not IPv4/UDP to dstPort.
func udpPayload(frame []byte, dstPort uint16) ([]byte, error) {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		return nil, fmt.Errorf("decode: %v", el.Error())
	}
	udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok || pkt.Layer(layers.LayerTypeIPv4) == nil {
		return nil, fmt.Errorf("not IPv4/UDP: %v", pkt)
	}
	if uint16(udp.DstPort) != dstPort {
		return nil, fmt.Errorf("UDP to port %d, want %d", udp.DstPort, dstPort)
	}
	return udp.Payload, nil
}

// receive collects UDP payloads from s until it has want of them or the
// deadline passes, keeping the fill ring topped up.
func receive(t *testing.T, s *Socket, want int, timeout time.Duration) []string {
	t.Helper()
	var got []string
	descs := make([]Desc, 64)
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		n := s.Receive(descs)
		if n == 0 {
			if _, err := s.Poll(unix.POLLIN, 20*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for _, d := range descs[:n] {
			p, err := udpPayload(s.Packet(d), testPort)
			if err != nil {
				t.Errorf("queue %d: %v", s.Queue(), err)
			} else {
				got = append(got, string(p))
			}
			s.Release(d.Addr)
		}
		s.Refill(n)
		if err := s.WakeFill(); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func payloads(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%05d", prefix, i)
	}
	return out
}

// sameMultiset reports the differences between what was sent and got.
func sameMultiset(sent [][]byte, got []string) error {
	count := map[string]int{}
	for _, p := range sent {
		count[string(p)]++
	}
	for _, g := range got {
		count[g]--
	}
	var missing, extra []string
	for k, v := range count {
		for ; v > 0; v-- {
			missing = append(missing, k)
		}
		for ; v < 0; v++ {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	return fmt.Errorf("sent %d, got %d: %d missing (e.g. %q), %d unexpected (e.g. %q)",
		len(sent), len(got), len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
}

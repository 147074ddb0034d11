package xsk

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
)

func TestMain(m *testing.M) { leak.Main(m) }

// testbed is a namespace pair whose side A runs a test-only XDP program:
// IPv4/UDP (no IP options) to port goes to xsks[rx_queue_index], with
// XDP_PASS when no socket sits at that index; everything else passes.
type testbed struct {
	link       *topo.Link
	xsks       *ebpf.Map
	port       uint16
	attachMode string
}

const testPort = 7777

func htons(v uint16) uint16 { return bits.ReverseBytes16(v) } // little-endian hosts only

func redirectProgram(t testing.TB, xsks *ebpf.Map, port uint16) *ebpf.Program {
	t.Helper()
	const (
		xdpPass       = 2
		etherIPv4     = 0x0800
		ethUDPHeaders = 14 + 20 + 8
	)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // xdp_md.data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // xdp_md.data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethUDPHeaders),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half), // EtherType, network order
		asm.JNE.Imm(asm.R4, int32(htons(etherIPv4)), "pass"),
		asm.LoadMem(asm.R4, asm.R2, 14, asm.Byte), // version 4, IHL 5
		asm.JNE.Imm(asm.R4, 0x45, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 14+9, asm.Byte), // protocol
		asm.JNE.Imm(asm.R4, unix.IPPROTO_UDP, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 14+20+2, asm.Half), // UDP destination port
		asm.JNE.Imm(asm.R4, int32(htons(port)), "pass"),
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word), // xdp_md.rx_queue_index
		asm.Mov.Imm(asm.R3, xdpPass),              // action when the slot is empty
		asm.FnRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("loading test XDP program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

func newTestbed(t testing.TB, cfg topo.Config) *testbed {
	t.Helper()
	queues := max(cfg.Queues, 1)
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
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(queues)})
	if err != nil {
		t.Fatalf("creating XSKMAP: %v", err)
	}
	t.Cleanup(func() { xsks.Close() })
	tb.xsks = xsks
	prog := redirectProgram(t, xsks, tb.port)
	var lnk link.Link
	err = l.A.Host.Do(func() error {
		// ZEROHOP_XDP_MODE=generic skips native mode, to exercise the
		// generic (skb) path by hand.
		errDrv := errors.New("skipped: ZEROHOP_XDP_MODE=generic")
		if os.Getenv("ZEROHOP_XDP_MODE") != "generic" {
			lnk, errDrv = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.A.Ifindex, Flags: link.XDPDriverMode})
		}
		if errDrv == nil {
			tb.attachMode = "native"
			return nil
		}
		var errGen error
		lnk, errGen = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.A.Ifindex, Flags: link.XDPGenericMode})
		if errGen == nil {
			tb.attachMode = "generic (native failed: " + errDrv.Error() + ")"
			return nil
		}
		return errors.Join(errDrv, errGen)
	})
	if err != nil {
		t.Fatalf("attaching XDP to %s: %v", l.A.Iface, err)
	}
	t.Cleanup(func() { lnk.Close() })
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

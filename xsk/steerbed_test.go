package xsk_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/xsk"
)

// Ports of the integration tests: servicePort is steered to the XSK
// sockets, otherPort is a plain kernel socket's.
const (
	servicePort = 7700
	otherPort   = 7701
)

// steerBed is a namespace pair with the steering program on side A (the
// server) and a service on servicePort; side B is the kernel client.
type steerBed struct {
	link *topo.Link
	prog *bpf.Program
}

// newSteerBed builds the pair and attaches the program. With staticNeigh
// the neighbours are written by hand so no ARP round trip delays (or, past
// the kernel's unresolved queue, drops) the first packets.
func newSteerBed(t *testing.T, cfg topo.Config, staticNeigh bool) *steerBed {
	t.Helper()
	l := topo.Pair(t, cfg)
	if staticNeigh {
		for _, e := range []struct{ on, peer topo.Endpoint }{{l.A, l.B}, {l.B, l.A}} {
			out, err := e.on.Host.Command(context.Background(), "ip", "neigh", "replace", e.peer.Addr4.String(),
				"lladdr", e.peer.MAC.String(), "dev", e.on.Iface, "nud", "permanent").CombinedOutput()
			if err != nil {
				t.Fatalf("ip neigh replace in %s: %v: %s", e.on.Host.Name, err, out)
			}
		}
	}
	b := &steerBed{link: l, prog: attachSteering(t, l.A, servicePort)}
	t.Logf("steering program attached in %v mode", b.prog.Mode())
	return b
}

// newUMEM maps a UMEM that the test closes after its sockets.
func newUMEM(t *testing.T, cfg xsk.UMEMConfig) *xsk.UMEM {
	t.Helper()
	u, err := xsk.NewUMEM(cfg)
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

// open binds a socket to queue of A's interface, registers it with the
// program and fills its fill ring; the test checks its accounting and
// closes it.
func (b *steerBed) open(t *testing.T, u *xsk.UMEM, queue int, cfg xsk.SocketConfig) *xsk.Socket {
	t.Helper()
	var s *xsk.Socket
	if err := b.link.A.Host.Do(func() (err error) {
		s, err = u.Open(b.link.A.Ifindex, queue, cfg)
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
	if err := b.prog.SetSocket(queue, s.FD()); err != nil {
		t.Fatal(err)
	}
	s.Refill(s.Free())
	return s
}

// send sends each payload in its own datagram from a kernel UDP socket in
// B's namespace to A's address and port. With cpu >= 0 the sending thread
// (locked by Host.Do) is pinned to that CPU, so XPS picks TX queue cpu.
func (b *steerBed) send(port uint16, payloads [][]byte, cpu int) error {
	return b.link.B.Host.Do(func() error {
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
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.link.A.Addr4, port)))
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

// counters reads the program's counters.
func (b *steerBed) counters(t *testing.T) bpf.Counters {
	t.Helper()
	c, err := b.prog.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCounters polls the program's counters until done accepts them or
// timeout passes, and returns the last reading.
func (b *steerBed) waitCounters(t *testing.T, timeout time.Duration, done func(bpf.Counters) bool) bpf.Counters {
	t.Helper()
	c := b.counters(t)
	for deadline := time.Now().Add(timeout); !done(c) && time.Now().Before(deadline); c = b.counters(t) {
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

// receiveFrom collects the UDP payloads (to servicePort, decoded with
// gopacket) that s receives until it has want of them or timeout passes,
// keeping the fill ring topped up.
func receiveFrom(t *testing.T, s *xsk.Socket, want int, timeout time.Duration) []string {
	t.Helper()
	var got []string
	descs := make([]xsk.Desc, 64)
	for deadline := time.Now().Add(timeout); len(got) < want && time.Now().Before(deadline); {
		n := s.Receive(descs)
		if n == 0 {
			if _, err := s.Poll(unix.POLLIN, 20*time.Millisecond); err != nil {
				t.Error(err)
				return got
			}
			continue
		}
		for _, d := range descs[:n] {
			if p, err := xsk.UDPPayload(s.Packet(d), servicePort); err != nil {
				t.Errorf("queue %d: %v", s.Queue(), err)
			} else {
				got = append(got, string(p))
			}
			s.Release(d.Addr)
		}
		s.Refill(n)
		if err := s.WakeFill(); err != nil {
			t.Error(err)
			return got
		}
	}
	return got
}

// listenKernel opens a kernel UDP socket on A's address and port with a
// receive buffer large enough for the tests' bursts.
func (b *steerBed) listenKernel(t *testing.T, port uint16) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := b.link.A.Host.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.link.A.Addr4, port)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	setRcvBuf(t, c, 8<<20)
	return c
}

func setRcvBuf(t *testing.T, c *net.UDPConn, size int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil || serr != nil {
		t.Fatalf("SO_RCVBUFFORCE: %v %v", err, serr)
	}
}

// readAll reads datagrams from c until it has want of them or timeout
// passes.
func readAll(c *net.UDPConn, want int, timeout time.Duration) []string {
	var got []string
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(timeout))
	for len(got) < want {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		got = append(got, string(buf[:n]))
	}
	return got
}

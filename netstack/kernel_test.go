package netstack_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/xsk"
)

// A kernel UDP socket in one namespace sends through a veth to a raw AF_XDP
// socket in the other, over IPv4 and IPv6. With TX checksum offload on (the
// veth default) every datagram arrives with only the pseudo-header sum in
// its checksum field: a strict Parse rejects it, AcceptPartialChecksum
// accepts and marks it. With offload off the checksum is full and both
// accept it, unmarked. Either way the reply we build, sent back through the
// AF_XDP socket, is accepted by the sender's kernel (which checks it:
// UdpInCsumErrors does not move).
func TestPartialChecksumFromKernelPeer(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("tx-offload-%v", offload), func(t *testing.T) {
			testKernelPeer(t, offload)
		})
	}
}

func testKernelPeer(t *testing.T, offload bool) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: !offload})
	const port = 9100
	var sock *xsk.Socket
	err := link.A.Host.Do(func() error {
		p, err := bpf.Join(link.A.Iface, bpf.Options{})
		if err != nil {
			return err
		}
		t.Cleanup(func() { p.Close() })
		umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: 256})
		if err != nil {
			return err
		}
		t.Cleanup(func() { umem.Close() })
		sock, err = umem.Open(link.A.Ifindex, 0, xsk.SocketConfig{CopyOnly: true, RXSize: 128, FillSize: 128, TXSize: 64, CompletionSize: 64})
		if err != nil {
			return err
		}
		sock.Refill(sock.Free())
		if err := p.SetSocket(0, sock.FD()); err != nil {
			return err
		}
		return p.AddService(bpf.Service{Port: port})
	})
	if err != nil {
		t.Fatal(err)
	}
	peer := newPeerSocket(t, link.B.Host)
	csumErrors := func() (v4, v6 uint64) {
		v4, err1 := link.B.Host.Netstat("Udp", "InCsumErrors")
		v6, err2 := link.B.Host.Netstat("Udp6", "InCsumErrors")
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		return v4, v6
	}
	v4Before, v6Before := csumErrors()

	strict := netstack.Parser{Port: port}
	lax := netstack.Parser{Port: port, AcceptPartialChecksum: true}
	for _, to := range []netip.Addr{link.A.Addr4, link.A.Addr6} {
		for i := range 3 {
			msg := fmt.Sprintf("request %v %d", to, i)
			peer.send(t, netip.AddrPortFrom(to, port), msg)
			frame, d := receiveOne(t, sock)
			var p netstack.Packet
			err := strict.Parse(frame, &p)
			if offload && err != netstack.ErrChecksum {
				t.Fatalf("%s: strict parse with offload on: %v, want ErrChecksum (only the pseudo-header sum)", msg, err)
			}
			if !offload && err != nil {
				t.Fatalf("%s: strict parse with offload off: %v", msg, err)
			}
			if err := lax.Parse(frame, &p); err != nil || p.PartialChecksum != offload || string(p.Payload) != msg {
				t.Fatalf("%s: lax parse: %v, partial %v, payload %q; want accepted, partial %v", msg, err, p.PartialChecksum, p.Payload, offload)
			}
			reply := "reply to " + msg
			n := copy(p.PayloadRoom(), reply)
			out, err := netstack.Reply(&p, n)
			if err != nil {
				t.Fatal(err)
			}
			checkWithGopacket(t, out)
			transmit(t, sock, xsk.Desc{Addr: d.Addr, Len: uint32(len(out))})
			if got := peer.wait(t); got != reply {
				t.Fatalf("the peer got %q, want %q", got, reply)
			}
		}
	}
	if v4, v6 := csumErrors(); v4 != v4Before || v6 != v6Before {
		t.Fatalf("the peer counted UDP checksum errors: Udp %d→%d, Udp6 %d→%d", v4Before, v4, v6Before, v6)
	}
}

// receiveOne waits (bounded) for one frame on sock and returns it, sliced
// to its frame's end so that Reply has room.
func receiveOne(t *testing.T, sock *xsk.Socket) ([]byte, xsk.Desc) {
	t.Helper()
	descs := make([]xsk.Desc, 1)
	deadline := time.Now().Add(10 * time.Second)
	for sock.Receive(descs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no frame reached the AF_XDP socket within 10 s")
		}
		unix.Poll([]unix.PollFd{{Fd: int32(sock.FD()), Events: unix.POLLIN}}, 50)
	}
	d := descs[0]
	return sock.Frame(d.Addr)[:d.Len], d
}

// transmit sends one frame and waits (bounded) for its completion.
func transmit(t *testing.T, sock *xsk.Socket, d xsk.Desc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sock.Transmit([]xsk.Desc{d}) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("TX ring full for 10 s")
		}
		sock.ReapCompletions()
	}
	for {
		if err := sock.Kick(); err != nil {
			t.Fatal(err)
		}
		if sock.ReapCompletions() > 0 {
			sock.Refill(sock.Free())
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no TX completion within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// peerSocket is a dual-stack kernel UDP socket in a namespace.
type peerSocket struct{ fd int }

func newPeerSocket(t *testing.T, host *topo.Host) *peerSocket {
	t.Helper()
	s := &peerSocket{fd: -1}
	err := host.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		leak.Track(fd)
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	})
	t.Cleanup(func() {
		if s.fd >= 0 {
			leak.Untrack(s.fd)
			unix.Close(s.fd)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *peerSocket) send(t *testing.T, to netip.AddrPort, msg string) {
	t.Helper()
	sa := &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	if err := unix.Sendto(s.fd, []byte(msg), 0, sa); err != nil {
		t.Fatal(err)
	}
}

func (s *peerSocket) wait(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if err == nil {
			return string(buf[:n])
		}
		if !errors.Is(err, unix.EAGAIN) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no reply reached the peer within 10 s")
		}
		unix.Poll([]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}, 50)
	}
}

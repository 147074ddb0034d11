package bpf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
)

// helperEnv makes the test binary act as a helper process instead of
// running tests (see runHelper).
const helperEnv = "ZEROHOP_BPF_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	leak.Main(m)
}

// runHelper runs one helper role:
//
//	hold:<iface>      attach to iface, print "attached <mode>", block until stdin closes
//	pinned:<dir>:<prefix>:<port>  open the pinned maps, print the counters,
//	                  add a deny rule for prefix and port, print "ok"
func runHelper(role string) int {
	if args, ok := strings.CutPrefix(role, "serve:"); ok {
		return runServerHelper(args)
	}
	if args, ok := strings.CutPrefix(role, "node:"); ok {
		return runNodeHelper(args)
	}
	parts := strings.Split(role, ":")
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	switch parts[0] {
	case "hold":
		p, err := Attach(parts[1], Options{})
		if err != nil {
			return fail(err)
		}
		fmt.Printf("attached %v\n", p.Mode())
		bufio.NewReader(os.Stdin).ReadString('\n')
		p.Close()
		return 0
	case "pinned":
		m, err := OpenPinned(parts[1])
		if err != nil {
			return fail(err)
		}
		defer m.Close()
		c, err := m.Counters()
		if err != nil {
			return fail(err)
		}
		fmt.Printf("seen %d passed %d\n", c.Seen, c.Passed)
		var port uint16
		fmt.Sscan(parts[3], &port)
		if err := m.AddACLRule(ACLRule{Source: netip.MustParsePrefix(strings.ReplaceAll(parts[2], "_", ":")), Port: port, Action: Deny}); err != nil {
			return fail(err)
		}
		fmt.Println("ok")
		return 0
	}
	return fail(errors.New("unknown role " + role))
}

// helperCommand runs the test binary as a helper with the given role, in
// host's namespace when host is not nil.
func helperCommand(t *testing.T, ctx context.Context, host *topo.Host, role string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if host != nil {
		cmd = host.Command(ctx, self, "-test.run=^$")
	} else {
		cmd = exec.CommandContext(ctx, self, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	cmd.Stderr = os.Stderr
	return cmd
}

// attach attaches the program to link.A inside its namespace and closes it
// when the test ends.
func attach(t *testing.T, link *topo.Link, opts Options) *Program {
	t.Helper()
	var p *Program
	if err := link.A.Host.Do(func() (err error) {
		p, err = Attach(link.A.Iface, opts)
		return err
	}); err != nil {
		t.Fatalf("Attach(%s): %v", link.A.Iface, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func counters(t testing.TB, m *Maps) Counters {
	t.Helper()
	c, err := m.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c Counters) sub(o Counters) Counters {
	return Counters{
		Seen: c.Seen - o.Seen, Redirected: c.Redirected - o.Redirected, Passed: c.Passed - o.Passed,
		ACLDropped: c.ACLDropped - o.ACLDropped, Malformed: c.Malformed - o.Malformed,
		NoSocket: c.NoSocket - o.NoSocket, LossDropped: c.LossDropped - o.LossDropped,
		Stale: c.Stale - o.Stale, Fragment: c.Fragment - o.Fragment, Oversize: c.Oversize - o.Oversize,
		UnsealedDropped: c.UnsealedDropped - o.UnsealedDropped,
	}
}

// checkDelta compares the counter movement with want: exactly for the
// counters only test packets can move, at least for Seen and Passed, which
// background traffic (IPv6 router solicitations, MLD) also moves.
func checkDelta(t *testing.T, before, after Counters, want Counters) {
	t.Helper()
	d := after.sub(before)
	if d.Redirected != want.Redirected || d.ACLDropped != want.ACLDropped || d.Malformed != want.Malformed ||
		d.NoSocket != want.NoSocket || d.LossDropped != want.LossDropped || d.Stale != want.Stale ||
		d.Fragment != want.Fragment || d.Oversize != want.Oversize || d.UnsealedDropped != want.UnsealedDropped ||
		d.Seen < want.Seen || d.Passed < want.Passed {
		t.Fatalf("counters moved by %+v, want %+v (Seen and Passed at least)", d, want)
	}
}

// udpSink is a dual-stack kernel UDP socket in a namespace.
type udpSink struct {
	fd   int
	port uint16
}

func newSink(t *testing.T, host *topo.Host, port uint16) *udpSink {
	t.Helper()
	s := &udpSink{fd: -1, port: port}
	err := host.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		leak.Track(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet6{Port: int(port)})
	})
	t.Cleanup(func() {
		if s.fd >= 0 {
			leak.Untrack(s.fd)
			unix.Close(s.fd)
		}
	})
	if err != nil {
		t.Fatalf("UDP socket on port %d in %s: %v", port, host.Name, err)
	}
	return s
}

// wait returns the next datagram, failing the test if none arrives within
// timeout (a bound against hangs, not a timing assertion).
func (s *udpSink) wait(t *testing.T, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b := s.poll(t); b != nil {
			return b
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("nothing arrived on port %d within %v", s.port, timeout)
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
	}
}

// poll returns a queued datagram or nil.
func (s *udpSink) poll(t *testing.T) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	n, _, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
	if errors.Is(err, unix.EAGAIN) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// drain returns every queued datagram.
func (s *udpSink) drain(t *testing.T) [][]byte {
	var out [][]byte
	for b := s.poll(t); b != nil; b = s.poll(t) {
		out = append(out, b)
	}
	return out
}

// udpSender is a kernel UDP socket in a namespace.
type udpSender struct{ fd int }

func newSender(t *testing.T, host *topo.Host) *udpSender {
	t.Helper()
	s := &udpSender{fd: -1}
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
		t.Fatalf("UDP sender in %s: %v", host.Name, err)
	}
	return s
}

func (s *udpSender) send(t *testing.T, to netip.Addr, port uint16, payload []byte) {
	t.Helper()
	sa := &unix.SockaddrInet6{Port: int(port), Addr: to.As16()}
	if err := unix.Sendto(s.fd, payload, 0, sa); err != nil {
		t.Fatalf("sendto %v:%d: %v", to, port, err)
	}
}

// rawSender writes whole Ethernet frames on an interface of a namespace.
type rawSender struct {
	fd      int
	ifindex int
}

func newRawSender(t *testing.T, ep topo.Endpoint) *rawSender {
	t.Helper()
	s := &rawSender{fd: -1, ifindex: ep.Ifindex}
	err := ep.Host.Do(func() error {
		// Protocol 0: this socket only sends.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		s.fd = fd
		leak.Track(fd)
		return err
	})
	t.Cleanup(func() {
		if s.fd >= 0 {
			leak.Untrack(s.fd)
			unix.Close(s.fd)
		}
	})
	if err != nil {
		t.Fatalf("AF_PACKET socket in %s: %v", ep.Host.Name, err)
	}
	return s
}

func (s *rawSender) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex}); err != nil {
		t.Fatalf("AF_PACKET send of %d bytes: %v", len(frame), err)
	}
}

// frame describes a UDP test frame from link.B to link.A.
type frame struct {
	src, dst  netip.Addr // zero: B's and A's address of dst's family
	v6        bool
	sport     uint16
	dport     uint16
	vlans     []uint16 // outer first; two tags make an 802.1ad outer tag
	ipOptions bool     // IPv4 options (3 NOPs and an end of list: IHL 6)
	payload   []byte
}

func (f frame) build(t testing.TB, link *topo.Link) []byte {
	t.Helper()
	src, dst := f.src, f.dst
	if !src.IsValid() {
		src = map[bool]netip.Addr{false: link.B.Addr4, true: link.B.Addr6}[f.v6]
	}
	if !dst.IsValid() {
		dst = map[bool]netip.Addr{false: link.A.Addr4, true: link.A.Addr6}[f.v6]
	}
	if f.sport == 0 {
		f.sport = 40000
	}
	eth := &layers.Ethernet{SrcMAC: link.B.MAC, DstMAC: link.A.MAC}
	var stack []gopacket.SerializableLayer
	stack = append(stack, eth)
	l3type := layers.EthernetTypeIPv4
	if f.v6 {
		l3type = layers.EthernetTypeIPv6
	}
	next := &eth.EthernetType
	for i, id := range f.vlans {
		*next = layers.EthernetTypeDot1Q
		if i == 0 && len(f.vlans) > 1 {
			*next = layers.EthernetTypeQinQ
		}
		tag := &layers.Dot1Q{VLANIdentifier: id}
		stack = append(stack, tag)
		next = &tag.Type
	}
	*next = l3type
	udp := &layers.UDP{SrcPort: layers.UDPPort(f.sport), DstPort: layers.UDPPort(f.dport)}
	if f.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		udp.SetNetworkLayerForChecksum(ip)
		stack = append(stack, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if f.ipOptions {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		udp.SetNetworkLayerForChecksum(ip)
		stack = append(stack, ip)
	}
	stack = append(stack, udp, gopacket.Payload(f.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, stack...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ipLinkShow returns `ip -d link show dev iface` inside host's namespace.
func ipLinkShow(t *testing.T, host *topo.Host, iface string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", host.Name, "-d", "link", "show", "dev", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show %s: %v: %s", iface, err, out)
	}
	return string(out)
}

// xdpShown reports the XDP attachment ip(8) shows: "xdp" (native),
// "xdpgeneric", or "" when none.
func xdpShown(t *testing.T, host *topo.Host, iface string) string {
	first, _, _ := strings.Cut(ipLinkShow(t, host, iface), "\n")
	for _, word := range strings.Fields(first) {
		if word == "xdp" || word == "xdpgeneric" || word == "xdpoffload" || word == "xdpmulti" {
			return word
		}
	}
	return ""
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

package xsk_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/xsk"
)

// ping runs ping from one endpoint to an address and fails t unless every
// echo is answered. The neighbour entries are left to the kernel, so the
// first echo also needs ARP (or neighbour discovery) through the program.
func ping(t *testing.T, from topo.Endpoint, to netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := from.Host.Command(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "5", to.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %v from %s: %v\n%s", to, from.Host.Name, err, out)
	}
	if !strings.Contains(string(out), " 0% packet loss") {
		t.Fatalf("ping %v from %s lost echoes:\n%s", to, from.Host.Name, out)
	}
}

// neighbourMAC reads the link-layer address that e's namespace resolved
// for addr.
func neighbourMAC(t *testing.T, e topo.Endpoint, addr netip.Addr) string {
	t.Helper()
	out, err := e.Host.Command(context.Background(), "ip", "neigh", "show", addr.String(), "dev", e.Iface).CombinedOutput()
	if err != nil {
		t.Fatalf("ip neigh show in %s: %v: %s", e.Host.Name, err, out)
	}
	fields := strings.Fields(string(out))
	for i, f := range fields {
		if f == "lladdr" && i+1 < len(fields) {
			return fields[i+1]
		}
	}
	return ""
}

// Service UDP goes to the XSK socket and nowhere else, UDP to another
// port reaches a kernel socket at the same time, and ARP, neighbour
// discovery and ICMP echo keep working through the program.
func TestSteeringServiceToSocketOthersToKernel(t *testing.T) {
	b := newSteerBed(t, topo.Config{}, false)
	a, c := b.link.A, b.link.B
	u := newUMEM(t, xsk.UMEMConfig{FrameCount: 4096})
	s := b.open(t, u, 0, xsk.SocketConfig{})
	kernel := b.listenKernel(t, otherPort)

	// Both directions, IPv4 (ARP) and IPv6 (neighbour discovery), while
	// a socket is registered for the service.
	ping(t, c, a.Addr4)
	ping(t, a, c.Addr4)
	ping(t, c, a.Addr6)
	ping(t, a, c.Addr6)
	if got := neighbourMAC(t, c, a.Addr4); got != a.MAC.String() {
		t.Fatalf("client resolved %v to %q, want %v", a.Addr4, got, a.MAC)
	}
	if got := neighbourMAC(t, a, c.Addr4); got != c.MAC.String() {
		t.Fatalf("server resolved %v to %q, want %v", c.Addr4, got, c.MAC)
	}

	before := b.counters(t)
	toService, toKernel := xsk.Payloads("svc", 1000), xsk.Payloads("kern", 1000)
	sent := make(chan error, 2)
	go func() { sent <- b.send(servicePort, toService, -1) }()
	go func() { sent <- b.send(otherPort, toKernel, -1) }()
	kernelGot := make(chan []string, 1)
	go func() { kernelGot <- readAll(kernel, len(toKernel), 20*time.Second) }()
	got := receiveFrom(t, s, len(toService), 20*time.Second)
	for range 2 {
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
	if err := xsk.SameMultiset(toService, got); err != nil {
		st, _ := s.Statistics()
		t.Errorf("XSK socket: %v; statistics %+v", err, st)
	}
	if err := xsk.SameMultiset(toKernel, <-kernelGot); err != nil {
		t.Errorf("kernel socket: %v", err)
	}
	after := b.counters(t)
	if d := after.Redirected - before.Redirected; d != uint64(len(toService)) {
		t.Errorf("Redirected grew by %d, want %d (before %+v, after %+v)", d, len(toService), before, after)
	}
	if d := after.Passed - before.Passed; d < uint64(len(toKernel)) {
		t.Errorf("Passed grew by %d, want at least the %d datagrams to port %d", d, len(toKernel), otherPort)
	}
	if after.ACLDropped != 0 || after.LossDropped != 0 || after.NoSocket != 0 {
		t.Errorf("counters %+v: nothing should be dropped or miss its socket", after)
	}
	// The kernel is still reachable after the burst.
	ping(t, c, a.Addr4)
}

// Two queues, one socket each, both on one UMEM: a sender pinned to CPU q
// transmits on queue q (XPS), which the peer receives on queue q, and the
// program hands it to the socket of queue q and no other.
func TestSteeringTwoQueuesSharedUMEM(t *testing.T) {
	b := newSteerBed(t, topo.Config{Queues: 2, XPS: true}, true)
	if b.prog.Mode() != bpf.ModeNative {
		// veth hands every packet to generic XDP with rx_queue_index 0.
		t.Fatalf("per-queue steering needs native XDP, attached in %v mode", b.prog.Mode())
	}
	u := newUMEM(t, xsk.UMEMConfig{FrameCount: 8192})
	sockets := []*xsk.Socket{
		b.open(t, u, 0, xsk.SocketConfig{FrameCount: 4096}),
		b.open(t, u, 1, xsk.SocketConfig{FrameCount: 4096}),
	}
	if sockets[0].SharedUMEM() || !sockets[1].SharedUMEM() {
		t.Fatalf("shared UMEM: first %v second %v, want false true", sockets[0].SharedUMEM(), sockets[1].SharedUMEM())
	}
	before := b.counters(t)
	sent := [][][]byte{xsk.Payloads("q0", 1000), xsk.Payloads("q1", 1000)}
	sendErr := make(chan error, 2)
	for cpu := range 2 {
		go func() { sendErr <- b.send(servicePort, sent[cpu], cpu) }()
	}
	got := make([][]string, 2)
	received := make(chan struct{}, 2)
	for q, s := range sockets {
		go func() {
			got[q] = receiveFrom(t, s, len(sent[q]), 20*time.Second)
			received <- struct{}{}
		}()
	}
	for range 2 {
		if err := <-sendErr; err != nil {
			t.Error(err)
		}
	}
	<-received
	<-received
	for q, s := range sockets {
		if err := xsk.SameMultiset(sent[q], got[q]); err != nil {
			st, _ := s.Statistics()
			t.Errorf("queue %d: %v; statistics %+v", q, err, st)
		}
	}
	after := b.counters(t)
	if d := after.Redirected - before.Redirected; d != 2000 {
		t.Errorf("Redirected grew by %d, want 2000", d)
	}
}

// A deny rule for the service port drops the client's datagrams in the
// program: the socket receives nothing and ACLDropped counts them all.
// Removing the rule restores delivery.
func TestSteeringACLDeny(t *testing.T) {
	b := newSteerBed(t, topo.Config{}, true)
	u := newUMEM(t, xsk.UMEMConfig{FrameCount: 4096})
	s := b.open(t, u, 0, xsk.SocketConfig{})
	client := netip.PrefixFrom(b.link.B.Addr4, 32)
	if err := b.prog.AddACLRule(bpf.ACLRule{Source: client, Port: servicePort, Action: bpf.Deny}); err != nil {
		t.Fatal(err)
	}

	const burst = 200
	before := b.counters(t)
	if err := b.send(servicePort, xsk.Payloads("denied", burst), -1); err != nil {
		t.Fatal(err)
	}
	// Once the program has dropped all of them nothing can arrive later.
	after := b.waitCounters(t, 10*time.Second, func(c bpf.Counters) bool { return c.ACLDropped-before.ACLDropped >= burst })
	if d := after.ACLDropped - before.ACLDropped; d != burst {
		t.Fatalf("ACLDropped grew by %d, want %d", d, burst)
	}
	if d := after.Redirected - before.Redirected; d != 0 {
		t.Errorf("Redirected grew by %d under a deny rule", d)
	}
	if s.RXReady() {
		t.Errorf("the socket has packets although the rule denies them all: %d", s.Receive(make([]xsk.Desc, 64)))
	}
	if st, err := s.Statistics(); err != nil || st != (xsk.Statistics{}) {
		t.Errorf("socket statistics %+v, %v; want all zero", st, err)
	}
	rules, err := b.prog.ACLRules()
	if err != nil || len(rules) != 1 || rules[0].Hits != burst {
		t.Errorf("ACL rules %+v, %v; want one rule with %d hits", rules, err, burst)
	}

	if err := b.prog.RemoveACLRule(client, servicePort); err != nil {
		t.Fatal(err)
	}
	allowed := xsk.Payloads("allowed", burst)
	before = b.counters(t)
	sendErr := make(chan error, 1)
	go func() { sendErr <- b.send(servicePort, allowed, -1) }()
	got := receiveFrom(t, s, burst, 20*time.Second)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if err := xsk.SameMultiset(allowed, got); err != nil {
		t.Fatalf("after removing the rule: %v", err)
	}
	after = b.counters(t)
	if after.ACLDropped != before.ACLDropped || after.Redirected-before.Redirected != burst {
		t.Errorf("after removing the rule: counters went from %+v to %+v", before, after)
	}
}

// SetLoss(n) drops exactly every n-th service datagram in the program: of
// a burst from one sender (in order on one queue) the socket misses
// exactly the n-th, 2n-th, … and receives the rest.
func TestSteeringLossKnob(t *testing.T) {
	b := newSteerBed(t, topo.Config{}, true)
	u := newUMEM(t, xsk.UMEMConfig{FrameCount: 4096})
	s := b.open(t, u, 0, xsk.SocketConfig{})
	const n, burst = 10, 1000
	if err := b.prog.SetLoss(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.prog.SetLoss(0) })
	sent := xsk.Payloads("lossy", burst)
	var want [][]byte
	for i, p := range sent {
		if (i+1)%n != 0 {
			want = append(want, p)
		}
	}
	before := b.counters(t)
	sendErr := make(chan error, 1)
	go func() { sendErr <- b.send(servicePort, sent, -1) }()
	got := receiveFrom(t, s, len(want), 20*time.Second)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	after := b.waitCounters(t, 10*time.Second, func(c bpf.Counters) bool {
		return c.Redirected-before.Redirected+c.LossDropped-before.LossDropped >= burst
	})
	if err := xsk.SameMultiset(want, got); err != nil {
		t.Errorf("with loss 1 in %d: %v", n, err)
	}
	if d := after.LossDropped - before.LossDropped; d != burst/n {
		t.Errorf("LossDropped grew by %d, want %d", d, burst/n)
	}
	if d := after.Redirected - before.Redirected; d != burst-burst/n {
		t.Errorf("Redirected grew by %d, want %d", d, burst-burst/n)
	}
}

// replyInPlace turns a received Ethernet/IPv4/UDP request into its reply
// inside the same frame: addresses and ports swapped, the first three
// payload bytes replaced by "rep", IPv4 and UDP checksums recomputed by
// gopacket. The request is frame[:length]; frame runs to the end of its
// UMEM frame, so the reply may grow (gopacket pads Ethernet to 60 bytes).
// It returns the reply's length.
func replyInPlace(frame []byte, length int) (int, error) {
	var (
		eth     layers.Ethernet
		ip      layers.IPv4
		udp     layers.UDP
		payload gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &udp, &payload)
	var decoded []gopacket.LayerType
	if err := parser.DecodeLayers(frame[:length], &decoded); err != nil {
		return 0, fmt.Errorf("decoding the request: %w", err)
	}
	if len(decoded) != 4 || len(payload) < 3 {
		return 0, fmt.Errorf("request is not Ethernet/IPv4/UDP with a payload: %v", decoded)
	}
	eth.SrcMAC, eth.DstMAC = eth.DstMAC, eth.SrcMAC
	ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
	udp.SrcPort, udp.DstPort = udp.DstPort, udp.SrcPort
	if err := udp.SetNetworkLayerForChecksum(&ip); err != nil {
		return 0, err
	}
	copy(payload, "rep")
	// Serialise into a scratch buffer (the layers alias the frame), then
	// write the reply back over the request.
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		&eth, &ip, &udp, payload); err != nil {
		return 0, err
	}
	if len(buf.Bytes()) > len(frame) {
		return 0, fmt.Errorf("reply of %d bytes does not fit the %d-byte frame", len(buf.Bytes()), len(frame))
	}
	return copy(frame, buf.Bytes()), nil
}

// respond answers every request s receives with replyInPlace, sent from
// the request's own frame, until stop is closed; then it waits for the
// kernel to complete what it sent.
func respond(s *xsk.Socket, stop <-chan struct{}) error {
	descs := make([]xsk.Desc, 64)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		select {
		case <-stop:
			for end := time.Now().Add(5 * time.Second); s.Accounting().TX+s.Accounting().Completion > 0 && time.Now().Before(end); {
				if err := s.Kick(); err != nil {
					return err
				}
				s.ReapCompletions()
			}
			return nil
		default:
		}
		n := s.Receive(descs)
		if n == 0 {
			s.ReapCompletions()
			s.Refill(s.Free())
			if _, err := s.Poll(unix.POLLIN, 10*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		for i := range descs[:n] {
			size, err := replyInPlace(s.Frame(descs[i].Addr), int(descs[i].Len))
			if err != nil {
				return err
			}
			descs[i].Len = uint32(size)
		}
		for posted := 0; posted < n; {
			posted += s.Transmit(descs[posted:n])
			if err := s.Kick(); err != nil {
				return err
			}
			s.ReapCompletions()
		}
		for s.TXPending() > 0 && time.Now().Before(deadline) {
			if err := s.Kick(); err != nil {
				return err
			}
		}
		s.ReapCompletions()
		s.Refill(s.Free())
	}
	return fmt.Errorf("responder still running after its time bound")
}

// Replies built in place in the received frames and sent through the
// socket's TX ring reach the kernel client with valid checksums.
func TestSteeringReplyInPlace(t *testing.T) {
	b := newSteerBed(t, topo.Config{}, true)
	a, c := b.link.A, b.link.B
	u := newUMEM(t, xsk.UMEMConfig{FrameCount: 4096})
	s := b.open(t, u, 0, xsk.SocketConfig{})

	var client *net.UDPConn
	if err := c.Host.Do(func() (err error) {
		client, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.Addr4, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr4, servicePort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	setRcvBuf(t, client, 8<<20)

	stop := make(chan struct{})
	responded := make(chan error, 1)
	go func() { responded <- respond(s, stop) }()
	defer func() {
		close(stop)
		if err := <-responded; err != nil {
			t.Error(err)
		}
	}()

	const requests = 500
	var want [][]byte
	for i, p := range xsk.Payloads("req", requests) {
		if _, err := client.Write(p); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want = append(want, append([]byte("rep"), p[3:]...))
	}
	if err := xsk.SameMultiset(want, readAll(client, requests, 20*time.Second)); err != nil {
		st, _ := s.Statistics()
		t.Errorf("replies: %v; socket statistics %+v, counters %+v", err, st, s.Counters())
	}
	for _, field := range []string{"InCsumErrors", "InErrors"} {
		if v, err := c.Host.Netstat("Udp", field); err != nil || v != 0 {
			t.Errorf("client Udp %s = %d, %v; want 0", field, v, err)
		}
	}
}

// Closing a socket takes it out of the program's XSKMAP (the kernel's
// xsk_release deletes it from every map): service datagrams then pass to
// the kernel as NoSocket instead of being redirected to a dead socket.
func TestSteeringClosedSocketLeavesMap(t *testing.T) {
	b := newSteerBed(t, topo.Config{}, true)
	u := newUMEM(t, xsk.UMEMConfig{FrameCount: 2048})
	var s *xsk.Socket
	if err := b.link.A.Host.Do(func() (err error) {
		s, err = u.Open(b.link.A.Ifindex, 0, xsk.SocketConfig{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.prog.SetSocket(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	kernel := b.listenKernel(t, servicePort)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	const burst = 20
	sent := xsk.Payloads("closed", burst)
	before := b.counters(t)
	if err := b.send(servicePort, sent, -1); err != nil {
		t.Fatal(err)
	}
	if err := xsk.SameMultiset(sent, readAll(kernel, burst, 10*time.Second)); err != nil {
		t.Errorf("kernel socket on the service port: %v", err)
	}
	after := b.counters(t)
	if after.Redirected != before.Redirected || after.NoSocket-before.NoSocket != burst {
		t.Errorf("after closing the socket: counters went from %+v to %+v, want %d more NoSocket and no Redirected", before, after, burst)
	}
}

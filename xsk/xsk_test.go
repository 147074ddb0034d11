package xsk

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
)

func TestHaveAFXDP(t *testing.T) {
	topo.RequireRoot(t)
	if err := HaveAFXDP(); err != nil {
		t.Fatalf("AF_XDP exists on this kernel: %v", err)
	}
}

func TestNewUMEMHugePagesFallsBack(t *testing.T) {
	checkNoMappings(t)
	u := openUMEM(t, UMEMConfig{FrameCount: 1024, FrameSize: 4096, HugePages: true})
	t.Logf("huge pages: %v", u.HugePages())
	if u.FrameSize() != 4096 || u.FrameCount() != 1024 || len(u.Frame(0)) != 4096 || len(u.Frame(4096*1023+100)) != 3996 {
		t.Fatalf("UMEM geometry wrong: size %d count %d", u.FrameSize(), u.FrameCount())
	}
	u.Frame(4096 * 1023)[4095] = 1 // the last byte is mapped and writable
	if _, err := NewUMEM(UMEMConfig{FrameSize: 3000}); err == nil {
		t.Fatal("frame size 3000 accepted")
	}
}

func TestReceive(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	// Huge pages when the machine has them reserved, normal pages if not.
	u := openUMEM(t, UMEMConfig{FrameCount: 4096, HugePages: true})
	t.Logf("UMEM on huge pages: %v", u.HugePages())
	s := tb.openSocket(t, u, 0, SocketConfig{})
	if got := s.Refill(4096); got != 2048 {
		t.Fatalf("Refill filled %d frames, want the fill ring's 2048", got)
	}
	sent := payloads("rx", 1000)
	done := make(chan error, 1)
	go func() { done <- tb.sendUDP(sent, -1) }()
	got := receive(t, s, len(sent), 20*time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := sameMultiset(sent, got); err != nil {
		st, _ := s.Statistics()
		t.Fatalf("%v; statistics %+v", err, st)
	}
	if err := s.CheckAccounting(); err != nil {
		t.Fatal(err)
	}
	a := s.Accounting()
	if a.Free+a.Fill+a.RX+a.User+a.TX+a.Completion != a.Total || a.User != 0 {
		t.Fatalf("accounting does not add up: %+v", a)
	}

	// The receive path does not allocate: packets waiting in the RX ring,
	// taken, released and refilled in batches.
	if err := tb.sendUDP(payloads("alloc", 640), -1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Accounting().RX < 640 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	descs := make([]Desc, 64)
	taken := 0
	allocs := testing.AllocsPerRun(10, func() {
		n := s.Receive(descs)
		for _, d := range descs[:n] {
			s.Release(d.Addr)
		}
		s.Refill(n)
		taken += n
	})
	if allocs != 0 || taken < 640 {
		t.Fatalf("receive path: %v allocs per batch over %d packets", allocs, taken)
	}
}

func TestSharedUMEMTwoQueues(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{Queues: 2, XPS: true})
	u := openUMEM(t, UMEMConfig{FrameCount: 8192})
	sockets := []*Socket{
		tb.openSocket(t, u, 0, SocketConfig{FrameCount: 4096}),
		tb.openSocket(t, u, 1, SocketConfig{FrameCount: 4096}),
	}
	if sockets[0].SharedUMEM() || !sockets[1].SharedUMEM() {
		t.Fatalf("shared UMEM: first %v second %v, want false true", sockets[0].SharedUMEM(), sockets[1].SharedUMEM())
	}
	if _, err := u.Open(tb.link.A.Ifindex, 1, SocketConfig{FrameCount: 1}); !errors.Is(err, ErrQueueTaken) && !errors.Is(err, ErrNoFrames) {
		t.Fatalf("second socket on queue 1: %v, want ErrQueueTaken", err)
	}
	for _, s := range sockets {
		s.Refill(4096)
	}
	sent := [][][]byte{payloads("q0", 1000), payloads("q1", 1000)}
	done := make(chan error, 2)
	for cpu := range 2 {
		go func() { done <- tb.sendUDP(sent[cpu], cpu) }()
	}
	got := make([][]string, 2)
	recvDone := make(chan struct{}, 2)
	for q, s := range sockets {
		go func() {
			got[q] = receive(t, s, len(sent[q]), 20*time.Second)
			recvDone <- struct{}{}
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	<-recvDone
	<-recvDone
	for q := range sockets {
		if err := sameMultiset(sent[q], got[q]); err != nil {
			// In generic mode veth hands every packet to XDP with
			// rx_queue_index 0, so per-queue steering needs native mode.
			t.Errorf("queue %d (XDP %s): %v", q, tb.attachMode, err)
		}
		if err := sockets[q].CheckAccounting(); err != nil {
			t.Error(err)
		}
		// The partitions are disjoint: every frame of queue 1 lies above
		// queue 0's range.
		if q == 1 && sockets[1].frames.first < sockets[0].frames.first+sockets[0].frames.count {
			t.Errorf("frame ranges overlap: %+v %+v", sockets[0].frames, sockets[1].frames)
		}
	}
}

// buildUDP serialises an Ethernet/IPv4/UDP frame from A to B with
// gopacket, checksums computed.
func buildUDP(t *testing.T, tb *testbed, payload []byte) []byte {
	t.Helper()
	a, b := tb.link.A, tb.link.B
	eth := &layers.Ethernet{SrcMAC: a.MAC, DstMAC: b.MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: a.Addr4.AsSlice(), DstIP: b.Addr4.AsSlice()}
	udp := &layers.UDP{SrcPort: testPort, DstPort: testPort}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTransmit(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	u := openUMEM(t, UMEMConfig{FrameCount: 4096})
	s := tb.openSocket(t, u, 0, SocketConfig{})

	var peer *net.UDPConn
	if err := tb.link.B.Host.Do(func() (err error) {
		peer, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tb.link.B.Addr4, testPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	raw, err := peer.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) })

	sent := payloads("tx", 1000)
	gotCh := make(chan []string, 1)
	go func() {
		var got []string
		buf := make([]byte, 2048)
		peer.SetReadDeadline(time.Now().Add(20 * time.Second))
		for len(got) < len(sent) {
			n, err := peer.Read(buf)
			if err != nil {
				break
			}
			got = append(got, string(buf[:n]))
		}
		gotCh <- got
	}()

	descs := make([]Desc, 0, 32)
	deadline := time.Now().Add(20 * time.Second)
	next := 0
	for (next < len(sent) || s.Accounting().Free != 4096) && time.Now().Before(deadline) {
		descs = descs[:0]
		for ; next < len(sent) && len(descs) < cap(descs); next++ {
			addr, ok := s.Alloc()
			if !ok {
				break
			}
			frame := buildUDP(t, tb, sent[next])
			copy(s.Frame(addr), frame)
			descs = append(descs, Desc{Addr: addr, Len: uint32(len(frame))})
		}
		if n := s.Transmit(descs); n != len(descs) {
			t.Fatalf("Transmit took %d of %d with an empty ring", n, len(descs))
		}
		if err := s.Kick(); err != nil {
			t.Fatal(err)
		}
		s.ReapCompletions()
	}
	got := <-gotCh
	if err := sameMultiset(sent, got); err != nil {
		st, _ := s.Statistics()
		t.Fatalf("%v; statistics %+v, counters %+v", err, st, s.Counters())
	}
	if !s.TXNeedsWakeup() && !s.ZeroCopy() {
		t.Errorf("copy mode TX ring does not ask for a wakeup")
	}
	for _, field := range []string{"InCsumErrors", "InErrors"} {
		if v, err := tb.link.B.Host.Netstat("Udp", field); err != nil || v != 0 {
			t.Errorf("peer Udp %s = %d, %v; want 0", field, v, err)
		}
	}
	t.Logf("counters: %+v", s.Counters())
}

func TestReplyInPlace(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	u := openUMEM(t, UMEMConfig{FrameCount: 2048})
	s := tb.openSocket(t, u, 0, SocketConfig{})
	s.Refill(1024)
	var peer *net.UDPConn
	if err := tb.link.B.Host.Do(func() (err error) {
		peer, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tb.link.B.Addr4, testPort)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(tb.link.A.Addr4, testPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	const rounds = 50
	descs := make([]Desc, 8)
	buf := make([]byte, 2048)
	for i := range rounds {
		want := payloads("echo", rounds)[i]
		if _, err := peer.Write(want); err != nil {
			t.Fatal(err)
		}
		n := 0
		for deadline := time.Now().Add(10 * time.Second); n == 0 && time.Now().Before(deadline); {
			s.Poll(unix.POLLIN, 20*time.Millisecond)
			n = s.Receive(descs[:1])
		}
		if n != 1 {
			t.Fatalf("round %d: nothing received", i)
		}
		// Rewrite the received frame into the reply A→B, same frame.
		reply := buildUDP(t, tb, append([]byte("re-"), s.Packet(descs[0])[42:]...))
		d := Desc{Addr: descs[0].Addr, Len: uint32(len(reply))}
		copy(s.Frame(d.Addr), reply)
		if s.Transmit([]Desc{d}) != 1 {
			t.Fatalf("round %d: Transmit refused", i)
		}
		for s.TXPending() > 0 {
			if err := s.Kick(); err != nil {
				t.Fatal(err)
			}
		}
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if string(buf[:m]) != "re-"+string(want) {
			t.Fatalf("round %d: reply %q", i, buf[:m])
		}
		for s.ReapCompletions() == 0 && s.Accounting().TX > 0 {
			s.Poll(unix.POLLOUT, time.Millisecond)
		}
		s.Refill(1)
	}
	if err := s.CheckAccounting(); err != nil {
		t.Fatal(err)
	}
}

func TestFillRingStarvation(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	u := openUMEM(t, UMEMConfig{FrameCount: 1024})
	s := tb.openSocket(t, u, 0, SocketConfig{FillSize: 512, RXSize: 512})
	// No Refill: the kernel finds the fill ring empty for every packet.
	const burst = 100
	if err := tb.sendUDP(payloads("starved", burst), -1); err != nil {
		t.Fatal(err)
	}
	var st Statistics
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st, err = s.Statistics(); err != nil {
			t.Fatal(err)
		}
		if st.RXDropped >= burst {
			break
		}
	}
	t.Logf("statistics after a starved burst of %d: %+v", burst, st)
	if st.RXDropped != burst || st.RXFillRingEmptyDescs == 0 {
		t.Fatalf("statistics %+v, want RXDropped = %d and RXFillRingEmptyDescs > 0", st, burst)
	}
	if n := s.Receive(make([]Desc, 8)); n != 0 {
		t.Fatalf("received %d packets with an empty fill ring", n)
	}
	// Refill: traffic recovers, nothing of the starved burst shows up.
	s.Refill(512)
	if err := s.WakeFill(); err != nil {
		t.Fatal(err)
	}
	sent := payloads("fed", burst)
	done := make(chan error, 1)
	go func() { done <- tb.sendUDP(sent, -1) }()
	got := receive(t, s, burst, 20*time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := sameMultiset(sent, got); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Statistics()
	if after.RXDropped != st.RXDropped {
		t.Errorf("RXDropped moved from %d to %d after refilling", st.RXDropped, after.RXDropped)
	}
}

func TestCloseThenRebind(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	u := openUMEM(t, UMEMConfig{FrameCount: 2048})
	for round := range 3 {
		var s *Socket
		if err := tb.link.A.Host.Do(func() (err error) {
			s, err = u.Open(tb.link.A.Ifindex, 0, SocketConfig{})
			return err
		}); err != nil {
			t.Fatalf("round %d: reopening queue 0 right after close: %v", round, err)
		}
		t.Logf("round %d: bound after %d EBUSY retries", round, s.Counters().BindBusyRetries)
		if err := s.Register(tb.xsks); err != nil {
			t.Fatal(err)
		}
		s.Refill(1024)
		sent := payloads("rebind", 20)
		if err := tb.sendUDP(sent, -1); err != nil {
			t.Fatal(err)
		}
		if err := sameMultiset(sent, receive(t, s, len(sent), 10*time.Second)); err != nil {
			t.Errorf("round %d: %v", round, err)
		}
		if err := s.CheckAccounting(); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s.FD() != -1 {
			t.Fatal("FD still set after Close")
		}
	}
}

func TestAccountingCatchesMisuse(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	u := openUMEM(t, UMEMConfig{FrameCount: 64})
	var s *Socket
	if err := tb.link.A.Host.Do(func() (err error) {
		s, err = u.Open(tb.link.A.Ifindex, 0, SocketConfig{RXSize: 64, TXSize: 64, FillSize: 64, CompletionSize: 64})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr, ok := s.Alloc()
	if !ok || s.Free() != 63 {
		t.Fatalf("Alloc: %v, free %d", ok, s.Free())
	}
	if got := s.Transmit([]Desc{{Addr: addr + 2000, Len: 100}}); got != 1 || s.Counters().TXRejected != 1 {
		t.Fatalf("a descriptor crossing its frame was not rejected: %d, %+v", got, s.Counters())
	}
	if err := s.CheckAccounting(); err != nil {
		t.Fatalf("a rejected descriptor broke the accounting: %v", err)
	}
	s.Release(addr) // already free again
	if s.Free() != 64 {
		t.Fatalf("double release changed the free stack: %d", s.Free())
	}
	if err := s.CheckAccounting(); err == nil {
		t.Fatal("CheckAccounting missed a double release")
	} else {
		t.Logf("as expected: %v", err)
	}
}

func TestKickTryLaterIsNotAnError(t *testing.T) {
	checkNoMappings(t)
	tb := newTestbed(t, topo.Config{})
	u := openUMEM(t, UMEMConfig{FrameCount: 512})
	s := tb.openSocket(t, u, 0, SocketConfig{TXSize: 512, CompletionSize: 512})
	// 256 frames in one go: copy mode sends 32 per kick and answers the
	// rest with EAGAIN, which Kick counts instead of failing.
	descs := make([]Desc, 256)
	for i := range descs {
		addr, ok := s.Alloc()
		if !ok {
			t.Fatal("Alloc failed with free frames")
		}
		frame := s.Frame(addr)
		copy(frame, tb.link.B.MAC)
		copy(frame[6:], tb.link.A.MAC)
		frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType: the peer drops it
		descs[i] = Desc{Addr: addr, Len: 60}
	}
	if n := s.Transmit(descs); n != len(descs) {
		t.Fatalf("Transmit took %d of %d", n, len(descs))
	}
	for deadline := time.Now().Add(10 * time.Second); s.Accounting().Free != 512 && time.Now().Before(deadline); {
		if err := s.Kick(); err != nil {
			t.Fatalf("Kick: %v", err)
		}
		s.ReapCompletions()
	}
	c := s.Counters()
	t.Logf("counters: %+v", c)
	if s.Accounting().Free != 512 || c.Completed != 256 {
		t.Fatalf("not every frame came back: %+v", s.Accounting())
	}
	if !s.ZeroCopy() && c.KickTryLater == 0 {
		t.Errorf("copy mode sent 256 frames without a single EAGAIN; Kicks %d", c.Kicks)
	}
}

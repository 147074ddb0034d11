package xsk

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
)

// pin locks the goroutine to its thread and the thread to cpu; the
// returned func undoes both.
func pin(cpu int) (func(), error) {
	runtime.LockOSThread()
	var orig, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	set.Set(cpu % runtime.NumCPU())
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return func() { unix.SchedSetaffinity(0, &orig); runtime.UnlockOSThread() }, nil
}

// blast sends count 64-byte UDP frames (22-byte payloads) from B to A's
// port with sendmmsg in batches of 64, from a thread pinned to cpu.
func (tb *testbed) blast(port uint16, count, cpu int) error {
	return tb.link.B.Host.Do(func() error {
		unpin, err := pin(cpu)
		if err != nil {
			return err
		}
		defer unpin()
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tb.link.A.Addr4, port)))
		if err != nil {
			return err
		}
		defer c.Close()
		pc := ipv4.NewPacketConn(c)
		msgs := make([]ipv4.Message, 64)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 64-14-20-8)}
		}
		for sent := 0; sent < count; {
			n, err := pc.WriteBatch(msgs[:min(len(msgs), count-sent)], 0)
			if err != nil {
				if err == unix.ENOBUFS || err == unix.EAGAIN {
					continue
				}
				return fmt.Errorf("sendmmsg after %d: %w", sent, err)
			}
			sent += n
		}
		return nil
	})
}

// rxRates receives one burst through an XSK socket and one through a
// kernel UDP socket (recvmmsg, 64 per call) and returns both rates in
// packets per second, measured from the first packet to the last.
func rxRates(b *testing.B, tb *testbed, s *Socket, kernel *ipv4.PacketConn, burst int) (xsk, kern pathResult) {
	const receiverCPU, senderCPU = 0, 1
	idle := 500 * time.Millisecond

	// XSK. The receiver gives up after idle only once the sender is done,
	// so a preempted sender does not count as loss.
	done := make(chan error, 1)
	var senderDone atomic.Bool
	go func() { err := tb.blast(testPort, burst, senderCPU); senderDone.Store(true); done <- err }()
	unpin, err := pin(receiverCPU)
	if err != nil {
		b.Fatal(err)
	}
	descs := make([]Desc, 64)
	var first, last time.Time
	xskGot := 0
	cpu0 := threadCPU()
	for xskGot < burst {
		n := s.Receive(descs)
		if n == 0 {
			if r, err := s.Poll(unix.POLLIN, idle); err != nil {
				b.Fatal(err)
			} else if r == 0 && senderDone.Load() {
				break // idle: the rest was dropped
			}
			continue
		}
		if xskGot == 0 {
			first = time.Now()
		}
		xskGot += n
		last = time.Now()
		for _, d := range descs[:n] {
			s.Release(d.Addr)
		}
		s.Refill(n)
	}
	xsk.cpuPerPacket = (threadCPU() - cpu0) / time.Duration(max(xskGot, 1))
	unpin()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	xsk.got, xsk.pps = xskGot, float64(xskGot-1)/last.Sub(first).Seconds()

	// Kernel socket, recvmmsg.
	senderDone.Store(false)
	go func() { err := tb.blast(testPort+1, burst, senderCPU); senderDone.Store(true); done <- err }()
	if unpin, err = pin(receiverCPU); err != nil {
		b.Fatal(err)
	}
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	kernelGot := 0
	cpu0 = threadCPU()
	for kernelGot < burst {
		kernel.SetReadDeadline(time.Now().Add(idle))
		n, err := kernel.ReadBatch(msgs, 0)
		if err != nil {
			if senderDone.Load() {
				break // idle: the rest was dropped
			}
			continue
		}
		if kernelGot == 0 {
			first = time.Now()
		}
		kernelGot += n
		last = time.Now()
	}
	kern.cpuPerPacket = (threadCPU() - cpu0) / time.Duration(max(kernelGot, 1))
	unpin()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	kern.got, kern.pps = kernelGot, float64(kernelGot-1)/last.Sub(first).Seconds()
	return xsk, kern
}

// vethDrops reads the drop counters of both veth ends, where packets the
// receiving side's NAPI ring could not take are counted.
func (tb *testbed) vethDrops() string {
	var out []byte
	for _, e := range []topo.Endpoint{tb.link.A, tb.link.B} {
		o, err := e.Host.Command(context.Background(), "sh", "-c",
			"cd /sys/class/net/"+e.Iface+"/statistics && echo "+e.Iface+" rx_dropped $(cat rx_dropped) tx_dropped $(cat tx_dropped)").CombinedOutput()
		if err != nil {
			return err.Error()
		}
		out = append(out, o...)
	}
	return strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")
}

type pathResult struct {
	pps          float64
	got          int
	cpuPerPacket time.Duration // receiving thread's CPU time (user+system)
}

// threadCPU is the calling thread's CPU time so far.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRXBurst compares receiving a burst of 64-byte UDP frames
// through AF_XDP (copy mode on veth) with a kernel UDP socket read by
// recvmmsg, in the same run and the same topology. zerohop's steering
// program (package bpf) is attached for both: it redirects the service port
// to the XSK socket and passes the kernel socket's port to the stack. One
// iteration is one burst per path; run with -benchtime=1x -count=5 and
// take medians of the reported metrics.
func BenchmarkRXBurst(b *testing.B) {
	const burst = 200_000
	topo.RequireRoot(b)
	tb := newTestbed(b, topo.Config{})
	u, err := NewUMEM(UMEMConfig{FrameCount: 16384})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	var s *Socket
	var kc *net.UDPConn
	if err := tb.link.A.Host.Do(func() (err error) {
		if s, err = u.Open(tb.link.A.Ifindex, 0, SocketConfig{RXSize: 8192, FillSize: 8192}); err != nil {
			return err
		}
		kc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tb.link.A.Addr4, testPort+1)))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	defer kc.Close()
	if err := s.Register(tb.xsks); err != nil {
		b.Fatal(err)
	}
	raw, _ := kc.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20) })
	s.Refill(8192)

	b.ReportAllocs()
	var xskRates, kernelRates, ratios, xskCPU, kernelCPU []float64
	var xskLost, kernelLost int
	for b.Loop() {
		x, k := rxRates(b, tb, s, ipv4.NewPacketConn(kc), burst)
		xskRates, kernelRates, ratios = append(xskRates, x.pps), append(kernelRates, k.pps), append(ratios, x.pps/k.pps)
		xskCPU, kernelCPU = append(xskCPU, float64(x.cpuPerPacket)), append(kernelCPU, float64(k.cpuPerPacket))
		xskLost += burst - x.got
		kernelLost += burst - k.got
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(median(xskRates), "xsk-pkts/s")
	b.ReportMetric(median(kernelRates), "recvmmsg-pkts/s")
	b.ReportMetric(median(ratios), "xsk/recvmmsg")
	b.ReportMetric(median(xskCPU), "xsk-rx-cpu-ns/pkt")
	b.ReportMetric(median(kernelCPU), "recvmmsg-rx-cpu-ns/pkt")
	b.ReportMetric(float64(xskLost)/float64(b.N), "xsk-lost/burst")
	b.ReportMetric(float64(kernelLost)/float64(b.N), "recvmmsg-lost/burst")
	st, _ := s.Statistics()
	b.Logf("burst %d; XDP %s; zero-copy %v; XSK statistics %+v; veth drops: %s", burst, tb.attachMode, s.ZeroCopy(), st, tb.vethDrops())
	if err := s.CheckAccounting(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTransmit measures the TX data path (Alloc, Transmit, Kick,
// ReapCompletions) per packet, sending real 64-byte frames to the peer; it
// must not allocate.
func BenchmarkTransmit(b *testing.B) {
	topo.RequireRoot(b)
	tb := newTestbed(b, topo.Config{})
	u, err := NewUMEM(UMEMConfig{FrameCount: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	var s *Socket
	if err := tb.link.A.Host.Do(func() (err error) {
		s, err = u.Open(tb.link.A.Ifindex, 0, SocketConfig{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	frame := make([]byte, 64)
	copy(frame, tb.link.B.MAC)
	copy(frame[6:], tb.link.A.MAC)
	frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType: the peer drops it
	descs := make([]Desc, 32)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := 0
		for ; n < len(descs) && sent+n < b.N; n++ {
			addr, ok := s.Alloc()
			if !ok {
				break
			}
			copy(s.Frame(addr), frame)
			descs[n] = Desc{Addr: addr, Len: uint32(len(frame))}
		}
		m := s.Transmit(descs[:n])
		for _, d := range descs[m:n] {
			s.Release(d.Addr)
		}
		sent += m
		if err := s.Kick(); err != nil {
			b.Fatal(err)
		}
		s.ReapCompletions()
	}
	b.StopTimer()
	for deadline := time.Now().Add(5 * time.Second); s.Accounting().Free != 4096 && time.Now().Before(deadline); {
		s.Kick()
		s.ReapCompletions()
	}
	if err := s.CheckAccounting(); err != nil {
		b.Fatal(err)
	}
}

package runtime_test

// Tests of the node data path (issue 9): every queue, queues shared with
// other servers, the hybrid kernel paths beside AF_XDP, real peers, loud
// failures, the frame budget.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

// logCapture is a slog.Handler that keeps every record, for tests that
// assert what the server logged.
type logCapture struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	c.recs = append(c.recs, rec)
	c.mu.Unlock()
	return nil
}

func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

func (c *logCapture) logger() *slog.Logger { return slog.New(c) }

// find returns the records at level whose message contains msg.
func (c *logCapture) find(level slog.Level, msg string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.recs {
		if r.level == level && strings.Contains(r.msg, msg) {
			out = append(out, r)
		}
	}
	return out
}

func (c *logCapture) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, r := range c.recs {
		fmt.Fprintf(&b, "%v %s %v\n", r.level, r.msg, r.attrs)
	}
	return b.String()
}

// callOnce sends req on conn until the reply with its id arrives, at most
// attempts times rto; it returns the reply and how many times it resent.
// Unlike kernelClient.call it reports failure instead of failing the
// test, so load goroutines can use it.
func callOnce(conn *net.UDPConn, buf []byte, req proto.Frame, rto time.Duration, attempts int) (proto.Frame, int, error) {
	id := req.RequestID()
	for a := 0; a < attempts; a++ {
		if _, err := conn.Write(req); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
			return nil, a, err
		}
		deadline := time.Now().Add(rto)
		for {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if errors.Is(err, unix.ECONNREFUSED) {
				// The kernel answered "port unreachable" (a server not
				// yet or no longer there): wait out the attempt.
				time.Sleep(time.Until(deadline))
				break
			}
			if err != nil {
				return nil, a, err
			}
			if f, err := proto.Parse(buf[:n]); err == nil && f.RequestID() == id {
				return append(proto.Frame(nil), f...), a, nil
			}
		}
	}
	return nil, attempts, fmt.Errorf("no reply to request %d after %d attempts of %v", id, attempts, rto)
}

func echoRequest(id uint64, payload []byte) proto.Frame {
	req, _ := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), id, proto.MethodID(echo.EchoMethod), 0, payload)
	return req
}

// pinThread pins the calling (locked) thread to cpu and returns what puts
// its former CPU set back: the thread goes back to Go's pool after
// topo.Host.Do, and a pinned one would pin whatever runs on it next (a
// Listen reading the CPUs it may use, say).
func pinThread(cpu int) (restore func(), err error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, err
	}
	return func() { unix.SchedSetaffinity(0, &old) }, nil
}

// spreadCalls makes calls echo calls to `to` from `sockets` kernel UDP
// sockets in h, each on its own goroutine pinned to CPU i mod NumCPU, so
// that XPS (topo.Config.XPS) spreads them over every TX queue of the
// sender, and so over every RX queue of the server. Every call must be
// answered with its own payload; it returns the retransmissions made.
func spreadCalls(t *testing.T, h *topo.Host, to netip.AddrPort, sockets, calls int) int {
	t.Helper()
	var next, retrans atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, sockets)
	for i := 0; i < sockets; i++ {
		wg.Add(1)
		done := h.Go(func() error {
			defer wg.Done()
			restore, err := pinThread(i % runtime.NumCPU())
			if err != nil {
				return err
			}
			defer restore()
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
			if err != nil {
				return err
			}
			defer conn.Close()
			buf := make([]byte, 65536)
			for {
				n := next.Add(1) - 1
				if n >= int64(calls) {
					return nil
				}
				payload := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(n))
				f, r, err := callOnce(conn, buf, echoRequest(uint64(n), payload), 500*time.Millisecond, 20)
				retrans.Add(int64(r))
				if err != nil {
					return fmt.Errorf("socket %d: %w", i, err)
				}
				if f.Status() != proto.StatusOK || !bytes.Equal(f.Payload(), payload) {
					return fmt.Errorf("socket %d call %d: status %v payload % x", i, n, f.Status(), f.Payload())
				}
			}
		})
		go func() { errs <- <-done }()
	}
	wg.Wait()
	for i := 0; i < sockets; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return int(retrans.Load())
}

// By default a server serves every RX queue of its interface, one loop
// per core owning the queues whose CPU it is (veth has no per-queue IRQs:
// queue mod NumCPU), and logs that map.
func TestXSKBackendEveryQueue(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		logs := &logCapture{}
		link, srv, _ := xskPair(t, offload, 4, zr.WithLogger(logs.logger()))
		queues, cores := srv.Queues()
		sorted := slices.Sorted(slices.Values(queues))
		if !slices.Equal(sorted, []int{0, 1, 2, 3}) {
			t.Fatalf("serving queues %v, want every queue 0-3", queues)
		}
		for i, q := range queues {
			if cores[i] != q%runtime.NumCPU() {
				t.Errorf("queue %d on core %d, want queue mod NumCPU = %d", q, cores[i], q%runtime.NumCPU())
			}
		}
		serving := logs.find(slog.LevelInfo, "zerohop serving")
		if len(serving) != 1 || !strings.Contains(serving[0].attrs["loops"], "queue0(no irq)") ||
			!strings.Contains(serving[0].attrs["cores_from"], "queue mod CPUs") {
			t.Fatalf("start-up line lacks the queue → IRQ → core map:\n%s", logs.dump())
		}
		t.Logf("loops=%q cores_from=%q", serving[0].attrs["loops"], serving[0].attrs["cores_from"])

		const calls = 10000
		retrans := spreadCalls(t, link.B.Host, srv.Addr(), 64, calls)
		st := srv.Stats()
		if len(st.Queues) != 4 {
			t.Fatalf("%d queue stats, want 4", len(st.Queues))
		}
		for _, q := range st.Queues {
			t.Logf("queue %d (core %d, irq %d): rx %d tx %d", q.Queue, q.Core, q.IRQ, q.RX, q.TX)
			if q.RX == 0 || q.TX == 0 {
				t.Errorf("queue %d: rx %d tx %d; every queue should have served some of the calls", q.Queue, q.RX, q.TX)
			}
		}
		if st.Total.Served["xsk"] < calls {
			t.Errorf("served %v, want all %d calls through AF_XDP", st.Total.Served, calls)
		}
		t.Logf("%d calls from 64 sockets, %d retransmissions, served %v", calls, retrans, st.Total.Served)
	})
}

// WithQueues(0) on a 4-queue interface: what arrives on queues 1-3 is
// passed to the kernel by the steering program and answered by the
// server's kernel sockets, so every call is still answered, and the
// counters say which path served.
func TestXSKBackendOneQueueOfFour(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		link, srv, _ := xskPair(t, offload, 4, zr.WithQueues(0))
		const calls = 10000
		retrans := spreadCalls(t, link.B.Host, srv.Addr(), 64, calls)
		st := srv.Stats()
		if len(st.Queues) != 1 || st.Queues[0].Queue != 0 || st.Queues[0].RX == 0 {
			t.Fatalf("queue stats %+v, want queue 0 alone, with traffic", st.Queues)
		}
		xsk, udp := st.Total.Served["xsk"], st.Total.Served["udp"]
		if xsk == 0 || udp == 0 || xsk+udp < calls {
			t.Fatalf("served xsk %d udp %d of %d calls: want both paths, all calls", xsk, udp, calls)
		}
		t.Logf("%d calls, %d retransmissions: %d through AF_XDP (queue 0), %d through the kernel path", calls, retrans, xsk, udp)
	})
}

// Beside its AF_XDP sockets an XSK server answers, on the same handlers,
// what never reaches them: a caller in its own namespace (loopback), a
// request too large for one frame (IP fragments, which the steering
// program passes to the kernel to reassemble) and TCP clients; the path
// that served each is counted. IPv4 and IPv6, against peers with
// checksum offload on and off.
func TestXSKBackendHybridPaths(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		for _, family := range []string{"ipv4", "ipv6"} {
			t.Run(family, func(t *testing.T) { testHybridPaths(t, offload, family) })
		}
	})
}

func testHybridPaths(t *testing.T, offload bool, family string) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: !offload})
	ip := link.A.Addr4
	if family == "ipv6" {
		ip = link.A.Addr6
	}
	srv, _ := testServerIn(t, link.A.Host.Do, netip.AddrPortFrom(ip, xskPort).String(),
		zr.WithInterface(link.A.Iface), zr.WithBackend(zr.BackendXSK), zr.WithTCP())
	served := func() map[string]uint64 {
		out := map[string]uint64{}
		for k, v := range srv.Stats().Total.Served {
			out[k] = v
		}
		return out
	}
	// expect runs call and checks that path alone served it.
	expect := func(what, path string, call func() error) {
		t.Helper()
		before := served()
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		after := served()
		for _, p := range []string{"xsk", "udp", "tcp"} {
			d := after[p] - before[p]
			if (p == path && d == 0) || (p != path && d != 0) {
				t.Errorf("%s: served deltas xsk %d udp %d tcp %d; want it on %s alone", what, after["xsk"]-before["xsk"],
					after["udp"]-before["udp"], after["tcp"]-before["tcp"], path)
				return
			}
		}
	}
	echoOver := func(conn *net.UDPConn, id uint64, payload []byte) error {
		f, _, err := callOnce(conn, make([]byte, 65536), echoRequest(id, payload), 500*time.Millisecond, 10)
		if err != nil {
			return err
		}
		if !bytes.Equal(f.Payload(), payload) {
			return fmt.Errorf("reply payload of %d bytes, sent %d", len(f.Payload()), len(payload))
		}
		return nil
	}
	dialIn := func(h *topo.Host) *net.UDPConn {
		var conn *net.UDPConn
		if err := h.Do(func() (err error) {
			conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.Addr()))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	peer, local := dialIn(link.B.Host), dialIn(link.A.Host)
	small := []byte("\x08\x2a")
	big := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), bytes.Repeat([]byte{0xab}, 2990))

	expect("UDP from the peer", "xsk", func() error { return echoOver(peer, 1, small) })
	expect("a 3,000-byte request from the peer (fragmented)", "udp", func() error { return echoOver(peer, 2, big) })
	expect("a caller in the server's namespace", "udp", func() error { return echoOver(local, 3, small) })
	expect("TCP from the peer", "tcp", func() error {
		return link.B.Host.Do(func() error {
			conn, err := net.DialTimeout("tcp", srv.Addr().String(), 10*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(echoRequest(4, big)); err != nil {
				return err
			}
			head := make([]byte, proto.HeaderLen)
			if _, err := readFull(conn, head); err != nil {
				return err
			}
			reply := append(head, make([]byte, proto.Frame(head).PayloadLen())...)
			if _, err := readFull(conn, reply[proto.HeaderLen:]); err != nil {
				return err
			}
			if f, err := proto.Parse(reply); err != nil || f.RequestID() != 4 || !bytes.Equal(f.Payload(), big) {
				return fmt.Errorf("TCP reply: %v, %d payload bytes", err, len(reply)-proto.HeaderLen)
			}
			return nil
		})
	})
	// And a caller in the server's namespace over TCP too.
	expect("TCP in the server's namespace", "tcp", func() error {
		return link.A.Host.Do(func() error {
			conn, err := net.DialTimeout("tcp", srv.Addr().String(), 10*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(echoRequest(5, small)); err != nil {
				return err
			}
			reply := make([]byte, proto.HeaderLen+len(small))
			if _, err := readFull(conn, reply); err != nil {
				return err
			}
			if f, err := proto.Parse(reply); err != nil || !bytes.Equal(f.Payload(), small) {
				return fmt.Errorf("TCP reply % x: %v", reply, err)
			}
			return nil
		})
	})
	st := srv.Stats().Total
	if (st.PartialChecksum > 0) != offload || st.Dropped["checksum"] != 0 {
		t.Errorf("offload %v: partial checksums %d, checksum drops %d", offload, st.PartialChecksum, st.Dropped["checksum"])
	}
	for _, proto := range []string{"Udp", "Udp6"} {
		if n, err := link.B.Host.Netstat(proto, "InCsumErrors"); err != nil || n != 0 {
			t.Errorf("peer %s InCsumErrors %d (%v): a reply had a bad checksum", proto, n, err)
		}
	}
}

func readFull(conn net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := conn.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// callFrom makes one echo call per socket from `sockets` kernel sockets in
// h (nil: this namespace), so that SO_REUSEPORT, which hashes the source
// address and port, spreads them over the servers sharing the address.
func callFrom(t *testing.T, h *topo.Host, to netip.AddrPort, sockets int) {
	t.Helper()
	do := func(fn func() error) error { return fn() }
	if h != nil {
		do = h.Do
	}
	if err := do(func() error {
		for i := 0; i < sockets; i++ {
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
			if err != nil {
				return err
			}
			payload := []byte{8, byte(i)}
			f, _, err := callOnce(conn, make([]byte, 2048), echoRequest(uint64(i), payload), 500*time.Millisecond, 10)
			conn.Close()
			if err != nil {
				return fmt.Errorf("socket %d: %w", i, err)
			}
			if !bytes.Equal(f.Payload(), payload) {
				return fmt.Errorf("socket %d: payload % x", i, f.Payload())
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A second server on an address fails with "address in use" on either
// backend, unless both opted in to sharing it (WithReusePort); then both
// serve.
func TestListenAddressInUse(t *testing.T) {
	here := func(f func() error) error { return f() }
	t.Run("uring", func(t *testing.T) {
		expectNoLoopsLeft(t)
		first, _ := startTestServer(t, here, "127.0.0.1:0", false, zr.WithBackend(zr.BackendUring))
		_, err := zr.Listen("udp", first.Addr().String(), zr.WithBackend(zr.BackendUring))
		if !errors.Is(err, zr.ErrAddrInUse) || !strings.Contains(err.Error(), "WithReusePort") {
			t.Fatalf("second Listen on %s: %v; want address in use, naming WithReusePort", first.Addr(), err)
		}
		a, _ := startTestServer(t, here, "127.0.0.1:0", false, zr.WithBackend(zr.BackendUring), zr.WithReusePort())
		b, _ := startTestServer(t, here, a.Addr().String(), false, zr.WithBackend(zr.BackendUring), zr.WithReusePort())
		callFrom(t, nil, a.Addr(), 64)
		if ra, rb := a.Stats().Total.Requests, b.Stats().Total.Requests; ra == 0 || rb == 0 || ra+rb != 64 {
			t.Fatalf("requests %d and %d of 64: both servers of the shared address should serve", ra, rb)
		}
	})
	forEachPeer(t, func(t *testing.T, offload bool) { testAddrInUseXSK(t, offload) })
}

func testAddrInUseXSK(t *testing.T, offload bool) {
	t.Run("xsk", func(t *testing.T) {
		link := topo.Pair(t, topo.Config{TxChecksumOff: !offload})
		addr := netip.AddrPortFrom(link.A.Addr4, xskPort).String()
		first, _ := testServerIn(t, link.A.Host.Do, addr, zr.WithInterface(link.A.Iface))
		if first.Backend() != zr.BackendXSK {
			t.Fatalf("first server on %v: %s", first.Backend(), first.BackendReason())
		}
		var err error
		link.A.Host.Do(func() error {
			_, err = zr.Listen("udp", addr, zr.WithInterface(link.A.Iface))
			return nil
		})
		if !errors.Is(err, zr.ErrAddrInUse) {
			t.Fatalf("second Listen on %s: %v; want address in use", addr, err)
		}
	})
	t.Run("xsk shared", func(t *testing.T) {
		expectNoLoopsLeft(t)
		link := topo.Pair(t, topo.Config{TxChecksumOff: !offload})
		addr := netip.AddrPortFrom(link.A.Addr4, xskPort).String()
		first, _ := startTestServer(t, link.A.Host.Do, addr, false, zr.WithInterface(link.A.Iface), zr.WithReusePort())
		logs := &logCapture{}
		second, _ := startTestServer(t, link.A.Host.Do, addr, false, zr.WithInterface(link.A.Iface), zr.WithReusePort(),
			zr.WithLogger(logs.logger()))
		// The steering program sends a port to one server's sockets: the
		// second shares the address on the kernel path, and says so.
		if first.Backend() != zr.BackendXSK || second.Backend() != zr.BackendUring {
			t.Fatalf("backends %v and %v, want xsk and uring", first.Backend(), second.Backend())
		}
		if w := logs.find(slog.LevelWarn, "falls back"); len(w) != 1 || !strings.Contains(w[0].attrs["reason"], "steered to another zerohop server") {
			t.Fatalf("no fallback WARN naming the other server:\n%s", logs.dump())
		}
		callFrom(t, link.B.Host, first.Addr(), 16)
		if n := first.Stats().Total.Served["xsk"]; n != 16 {
			t.Errorf("first server served %d of the peer's 16 calls through AF_XDP", n)
		}
		callFrom(t, link.A.Host, first.Addr(), 64)
		ra, rb := first.Stats().Total.Served["udp"], second.Stats().Total.Served["udp"]
		if ra == 0 || rb == 0 || ra+rb != 64 {
			t.Fatalf("kernel-path requests %d and %d of 64: both servers should serve the shared address", ra, rb)
		}
	})
}

// Servers of one interface divide its queues (AF_XDP allows one process
// per queue): a server started beside one holding queues 0 and 1 serves
// the others, warns naming who holds 0 and 1, and still answers what
// arrives for it there through the kernel path. When every queue is
// taken, BackendAuto falls back to io_uring sockets with a WARN, and a
// forced XSK backend fails saying why.
func TestXSKQueuesHeldByAnotherServer(t *testing.T) { forEachPeer(t, testQueuesHeld) }

func testQueuesHeld(t *testing.T, offload bool) {
	expectNoLoopsLeft(t)
	link := topo.Pair(t, topo.Config{Queues: 4, XPS: true, TxChecksumOff: !offload})
	at := func(port uint16) string { return netip.AddrPortFrom(link.A.Addr4, port).String() }
	first, _ := startTestServer(t, link.A.Host.Do, at(7100), false, zr.WithInterface(link.A.Iface), zr.WithBackend(zr.BackendXSK), zr.WithQueues(0, 1))
	logs := &logCapture{}
	second, _ := startTestServer(t, link.A.Host.Do, at(7101), false, zr.WithInterface(link.A.Iface), zr.WithLogger(logs.logger()))
	if q, _ := second.Queues(); second.Backend() != zr.BackendXSK || !slices.Equal(slices.Sorted(slices.Values(q)), []int{2, 3}) {
		t.Fatalf("second server: %v on queues %v (%s), want xsk on 2,3", second.Backend(), q, second.BackendReason())
	}
	w := logs.find(slog.LevelWarn, "held by other")
	pid := fmt.Sprintf("pid %d", unix.Getpid())
	if len(w) != 1 || w[0].attrs["unserved"] != "0,1" || !strings.Contains(w[0].attrs["held_by"], "0,1 ("+pid+", slot ") {
		t.Fatalf("no WARN naming queues 0,1 and their holder (%s):\n%s", pid, logs.dump())
	}
	t.Logf("WARN %s %v", w[0].msg, w[0].attrs)
	spreadCalls(t, link.B.Host, first.Addr(), 32, 2000)
	spreadCalls(t, link.B.Host, second.Addr(), 32, 2000)
	for i, srv := range []*zr.Server{first, second} {
		st := srv.Stats().Total
		if st.Served["xsk"] == 0 || st.Served["udp"] == 0 {
			t.Errorf("server %d served %v: want its own queues on AF_XDP and the other's through the kernel path", i+1, st.Served)
		}
	}

	logs = &logCapture{}
	third, _ := startTestServer(t, link.A.Host.Do, at(7102), false, zr.WithInterface(link.A.Iface), zr.WithLogger(logs.logger()))
	if third.Backend() != zr.BackendUring {
		t.Fatalf("third server on %v with every queue taken", third.Backend())
	}
	if w := logs.find(slog.LevelWarn, "falls back"); len(w) != 1 || !strings.Contains(w[0].attrs["reason"], "every RX queue") {
		t.Fatalf("no fallback WARN with the cause:\n%s", logs.dump())
	}
	callFrom(t, link.B.Host, third.Addr(), 8)
	var err error
	link.A.Host.Do(func() error {
		_, err = zr.Listen("udp", at(7103), zr.WithInterface(link.A.Iface), zr.WithBackend(zr.BackendXSK))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "held by other zerohop servers") || !strings.Contains(err.Error(), pid) {
		t.Fatalf("forced XSK with every queue taken: %v", err)
	}
	link.A.Host.Do(func() error {
		_, err = zr.Listen("udp", at(7103), zr.WithInterface(link.A.Iface), zr.WithBackend(zr.BackendXSK), zr.WithQueues(1))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "WithQueues") {
		t.Fatalf("WithQueues(1) while another server holds queue 1: %v", err)
	}
}

// Every drop is counted by reason; the first of each reason is a WARN,
// later ones are rate-limited (at most one line per 10 s).
func TestDropWarnsFirstThenRateLimited(t *testing.T) { forEachPeer(t, testDropWarns) }

func testDropWarns(t *testing.T, offload bool) {
	logs := &logCapture{}
	link, srv, _ := xskPair(t, offload, 1, zr.WithLogger(logs.logger()))
	c := kernelClientIn(t, link.B.Host, srv.Addr())
	const shorts = 50
	for i := 0; i < shorts; i++ {
		c.send([]byte("short"))
	}
	// The call's reply comes after the shorts were handled: one socket,
	// one queue, in order.
	c.call(1, echo.EchoMethod, []byte("\x08\x01"))
	st := srv.Stats().Total
	if st.DroppedByPath["xsk"]["short"] != shorts {
		t.Fatalf("dropped %v, want %d short on xsk", st.DroppedByPath, shorts)
	}
	var lines int
	for _, r := range logs.find(slog.LevelWarn, "dropped a datagram") {
		if r.attrs["reason"] == "short" && r.attrs["path"] == "xsk" {
			lines++
		}
	}
	if lines < 1 || lines >= shorts {
		t.Fatalf("%d WARN lines for %d short datagrams, want the first and few more:\n%s", lines, shorts, logs.dump())
	}
}

// The frame budget: with a UMEM of 256 frames and a blocking pool that
// holds more requests than that (one worker, 300 queued, all held by the
// gate), no frame stays with a held request, so PINGs are still answered,
// the requests the pool cannot take are answered OVERLOADED, and the held
// ones are answered once the gate opens.
func TestXSKFrameBudget(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		link, srv, gate := xskPair(t, offload, 1, zr.WithFrames(256), zr.WithWorkers(1, 300))
		c := kernelClientIn(t, link.B.Host, srv.Addr())
		// The held replies come in one burst once the gate opens: give
		// the client room for all of them.
		raw, err := c.conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) })
		if err != nil {
			t.Fatal(err)
		}
		statuses := map[proto.Status]int{}
		ok := map[uint64]bool{}
		collect := func(f proto.Frame) {
			if f.Kind() == proto.KindResponse {
				statuses[f.Status()]++
				if f.Status() == proto.StatusOK {
					ok[f.RequestID()] = true
				}
			}
		}
		ping := func(id uint64) {
			t.Helper()
			p, _ := proto.EncodePing(make([]byte, proto.HeaderLen), id)
			for attempt := 0; attempt < 20; attempt++ {
				c.send(p)
				for f := c.recv(500 * time.Millisecond); f != nil; f = c.recv(500 * time.Millisecond) {
					if f.Kind() == proto.KindPong && f.RequestID() == id {
						if f.Status() != proto.PongServing {
							t.Fatalf("PONG %d status %d", id, f.Status())
						}
						return
					}
					collect(f)
				}
			}
			t.Fatalf("PING %d unanswered with the pool full", id)
		}
		const sent = 600
		for i := 0; i < sent; i++ {
			req, _ := proto.EncodeRequest(make([]byte, 64), uint64(i), proto.MethodID(blockingMethod), 0, []byte{8, byte(i)})
			c.send(req)
			if i%32 == 31 {
				ping(uint64(1_000_000 + i))
			}
		}
		ping(2_000_000)
		st := srv.Stats().Total
		if st.Blocking <= 256 {
			t.Fatalf("only %d requests reached the pool; the test needs more held than the UMEM has frames", st.Blocking)
		}
		if st.Overloaded == 0 || uint64(statuses[proto.StatusOverloaded]) != st.Overloaded {
			t.Fatalf("OVERLOADED: counted %d, answered %d", st.Overloaded, statuses[proto.StatusOverloaded])
		}
		gate.open()
		for len(ok) < int(st.Blocking) {
			f := c.recv(10 * time.Second)
			if f == nil {
				rcv, _ := link.B.Host.Netstat("Udp", "RcvbufErrors")
				t.Fatalf("%d of %d held requests answered after the gate opened; stats %+v; client RcvbufErrors %d", len(ok), st.Blocking, srv.Stats().Total, rcv)
			}
			collect(f)
		}
		if d := srv.Stats().Total.Dropped["no_frame"]; d != 0 {
			t.Fatalf("%d replies dropped for want of a frame", d)
		}
		t.Logf("%d sent: %d held by the pool (UMEM 256 frames), %d OVERLOADED, PINGs answered throughout; statuses %v",
			sent, st.Blocking, st.Overloaded, statuses)
	})
}

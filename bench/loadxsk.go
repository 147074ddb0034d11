package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	goruntime "runtime"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/xsk"
	"golang.org/x/sys/unix"
)

// The XSK load generator: the client side of the bench on an AF_XDP
// socket, so that the kernel's UDP send and receive path is not what
// limits the servers. The harness knows both ends of the veth, so the
// client builds whole Ethernet/IPv4/UDP frames itself (netstack.BuildUDP,
// full checksums) addressed to the server's MAC, and the steering program
// of package bpf, joined on the client's veth, redirects the replies to
// the client's port into the socket. The loop is the kernel client's: N
// slots each with one request in flight, request id = generation<<32 |
// slot, spinning while replies come and sleeping in poll(2) when idle,
// resending (with a new generation) what is unanswered after the timeout.

const (
	xskLoadBatch     = 64
	xskLoadFrameSize = 2048
	// xskLoadMinFrames per socket: enough for the fill ring to absorb a
	// burst of replies while the loop is preempted (DESIGN: "Kernel facts").
	xskLoadMinFrames = 4096
	// xskLoadMaxKicks bounds the kicks per pass: a copy-mode kick sends
	// at most 32 frames and answers EAGAIN for the rest (DESIGN).
	xskLoadMaxKicks = xskLoadBatch/32 + 2
)

// gwirFrames builds the client's request frames. Every request of a run
// differs from the others only in its request id, so BuildUDP builds one
// template (the GWIR request at its payload offset, the Ethernet/IP/UDP
// headers around it, full checksums), and each frame is the template with
// its id written in and the UDP checksum updated for the 8 changed bytes
// (RFC 1624): the same bytes BuildUDP would write, without summing the
// datagram again per request.
type gwirFrames struct {
	fields   netstack.UDPFields
	hdrLen   int
	method   uint32
	payload  []byte
	template []byte
	tmplID   uint64 // the request id in the template
	udpOff   int    // of the UDP header
}

func newGWIRFrames(srcMAC, dstMAC netstack.MAC, src, dst netip.AddrPort, method uint32, payload []byte) (*gwirFrames, error) {
	g := &gwirFrames{fields: netstack.UDPFields{SrcMAC: srcMAC, DstMAC: dstMAC, Src: src, Dst: dst,
		IPv4Flags: netstack.IPv4FlagDontFragment}, method: method, payload: payload}
	if g.hdrLen = g.fields.HeaderLen(); g.hdrLen == 0 {
		return nil, fmt.Errorf("bench xsk load: %v and %v are not of one address family", src, dst)
	}
	g.udpOff = g.hdrLen - netstack.UDPMinimumSize
	buf := make([]byte, g.frameLen())
	req, err := proto.EncodeRequest(buf[g.hdrLen:], g.tmplID, method, 0, payload)
	if err != nil {
		return nil, fmt.Errorf("bench xsk load: encoding a request: %w", err)
	}
	if g.template, err = netstack.BuildUDP(buf, &g.fields, req); err != nil {
		return nil, fmt.Errorf("bench xsk load: building a request frame: %w", err)
	}
	return g, nil
}

// frameLen is the size of every request frame.
func (g *gwirFrames) frameLen() int { return g.hdrLen + proto.HeaderLen + len(g.payload) }

// requestIDOffset is where the GWIR header keeps the request id.
const requestIDOffset = 8

// build writes the request with id into buf (a UMEM frame) and returns
// the frame, a prefix of buf.
func (g *gwirFrames) build(buf []byte, id uint64) ([]byte, error) {
	if len(buf) < len(g.template) {
		return nil, fmt.Errorf("bench xsk load: a %d-byte request frame does not fit a %d-byte buffer", len(g.template), len(buf))
	}
	f := buf[:copy(buf, g.template)]
	binary.BigEndian.PutUint64(f[g.hdrLen+requestIDOffset:], id)
	udp := netstack.UDP(f[g.udpOff:])
	sum := netstack.ChecksumUpdate32(udp.Checksum(), uint32(g.tmplID>>32), uint32(id>>32))
	sum = netstack.ChecksumUpdate32(sum, uint32(g.tmplID), uint32(id))
	if sum == 0 {
		sum = 0xffff // a computed zero is sent as all ones: zero means "no checksum" (RFC 768)
	}
	udp.SetChecksum(sum)
	return f, nil
}

// gwirReplies recognises the server's replies among the frames steered
// to the client's port.
type gwirReplies struct {
	parser netstack.Parser
	server netip.AddrPort
	pkt    netstack.Packet
}

var (
	errReplyNotUDP    = errors.New("not a checksum-valid UDP datagram to the client's port")
	errReplyForeign   = errors.New("not from the server's address and port")
	errReplyNotAReply = errors.New("not a GWIR response (nor a request echoed verbatim)")
)

func newGWIRReplies(client, server netip.AddrPort) *gwirReplies {
	return &gwirReplies{parser: netstack.Parser{Port: client.Port()}, server: server}
}

// parse checks frame (headers, both checksums, the source) and returns the
// GWIR reply it carries; the Frame aliases frame.
func (r *gwirReplies) parse(frame []byte) (proto.Frame, error) {
	if err := r.parser.Parse(frame, &r.pkt); err != nil {
		return nil, fmt.Errorf("%w: %w", errReplyNotUDP, err)
	}
	if r.pkt.Class != netstack.ClassUDP {
		return nil, errReplyNotUDP
	}
	var from netip.Addr
	if r.pkt.IPv4 != nil {
		from = r.pkt.IPv4.SourceAddress()
	} else {
		from = r.pkt.IPv6.SourceAddress()
	}
	if from != r.server.Addr() || r.pkt.UDP.SourcePort() != r.server.Port() {
		return nil, errReplyForeign
	}
	f, err := proto.Parse(r.pkt.Payload)
	if err != nil {
		return nil, err
	}
	// A REQUEST coming back is the raw-xsk ceiling's verbatim echo; the
	// kernel-UDP client takes it as a reply too.
	if k := f.Kind(); k != proto.KindResponse && k != proto.KindRequest {
		return nil, errReplyNotAReply
	}
	return f, nil
}

// loadSlot is one of the N requests a closed-loop load keeps in flight.
type loadSlot struct {
	gen    uint32
	sent   time.Duration // since the client's epoch
	active bool          // issued at least once
	queued bool          // waiting in pending for its (re)transmission
}

// slotTable holds the slots and the ones waiting to be sent. A slot's
// request id is its generation in the high 32 bits and its index in the
// low 32 bits; each (re)issue starts a generation, so a reply to an
// earlier copy is told apart.
type slotTable struct {
	slots   []loadSlot
	pending []int
	spare   []int // the other buffer of pending, to compact without allocating
}

func newSlotTable(n int) *slotTable {
	return &slotTable{slots: make([]loadSlot, n), pending: make([]int, 0, n), spare: make([]int, 0, n)}
}

// issue starts a new generation of slot i and queues it.
func (t *slotTable) issue(i int) {
	s := &t.slots[i]
	s.gen++
	s.active, s.queued = true, true
	t.pending = append(t.pending, i)
}

func (t *slotTable) id(i int) uint64 { return uint64(t.slots[i].gen)<<32 | uint64(i) }

// sent records slot i's transmission at now.
func (t *slotTable) sent(i int, now time.Duration) {
	t.slots[i].sent, t.slots[i].queued = now, false
}

// match returns the slot a reply's request id belongs to, if it is the
// slot's current request and that was sent.
func (t *slotTable) match(id uint64) (int, bool) {
	i := int(id & 0xffffffff)
	if i >= len(t.slots) {
		return 0, false
	}
	s := &t.slots[i]
	if !s.active || s.queued || s.gen != uint32(id>>32) {
		return 0, false
	}
	return i, true
}

// requeue puts the slots in front back before pending[from:], keeping
// their generations (they were never sent).
func (t *slotTable) requeue(front []int, from int) {
	t.spare = append(append(t.spare[:0], front...), t.pending[from:]...)
	t.pending, t.spare = t.spare, t.pending
}

// loadWindow is the warm-up and measured window of a load, and the
// markers around it on the client's stdout.
type loadWindow struct {
	out       io.Writer
	start     time.Duration // when measuring starts (then: started)
	duration  time.Duration
	count     int64 // > 0: the window also ends after this many replies
	end       time.Duration
	measuring bool
	cpuStart  time.Duration
}

// advance moves the window on at t; it reports true once the window is
// over (res then has its CPU time and length).
func (w *loadWindow) advance(t time.Duration, res *ClientResult) bool {
	switch {
	case !w.measuring && t >= w.start:
		w.measuring = true
		w.cpuStart = cpuTime()
		fmt.Fprintln(w.out, markerMeasureStart)
		// The window starts now, however late (as the kernel client's).
		w.start, w.end = t, t+w.duration
	case w.measuring && (t >= w.end || w.count > 0 && res.Requests >= w.count):
		res.CPUSeconds = (cpuTime() - w.cpuStart).Seconds()
		res.WindowS = (t - w.start).Seconds()
		fmt.Fprintln(w.out, markerMeasureEnd)
		return true
	}
	return false
}

// xskLoad is the client's hold on its interface: a slot in the steering
// program steering the client's port, one UMEM, one socket per queue, and
// a kernel UDP socket bound to the same address so that nobody else takes
// the port and what the program passes to the kernel is not answered
// with ICMP.
type xskLoad struct {
	prog    *bpf.Program
	umem    *xsk.UMEM
	socks   []*xsk.Socket
	reserve int
	scratch []byte // to drain reserve into
	frames  int    // per socket
	detail  string
}

func openXSKLoad(iface string, ifindex int, src netip.AddrPort, queues, frames int) (l *xskLoad, err error) {
	l = &xskLoad{reserve: -1, frames: frames, scratch: make([]byte, 65536)}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.reserve, err = bindUDP(src); err != nil {
		return nil, err
	}
	if err := xsk.HaveAFXDP(); err != nil {
		return nil, fmt.Errorf("bench xsk load: AF_XDP sockets: %w", err)
	}
	if l.prog, err = bpf.Join(iface, bpf.Options{}); err != nil {
		return nil, fmt.Errorf("bench xsk load: joining the XDP steering program of %s: %w", iface, err)
	}
	if l.umem, err = xsk.NewUMEM(xsk.UMEMConfig{FrameCount: frames * queues, FrameSize: xskLoadFrameSize}); err != nil {
		return nil, fmt.Errorf("bench xsk load: UMEM of %d frames: %w", frames*queues, err)
	}
	rxRing, txRing := frames/2, frames/4
	for q := range queues {
		s, err := l.umem.Open(ifindex, q, xsk.SocketConfig{FrameCount: frames, RXSize: rxRing, FillSize: rxRing,
			TXSize: txRing, CompletionSize: txRing})
		if err != nil {
			return nil, fmt.Errorf("bench xsk load: AF_XDP socket on %s queue %d: %w", iface, q, err)
		}
		l.socks = append(l.socks, s)
		if err := l.prog.SetSocket(q, s.FD()); err != nil {
			return nil, fmt.Errorf("bench xsk load: registering queue %d's socket: %w", q, err)
		}
		s.Refill(s.Free() - l.txReserve())
	}
	svc := bpf.Service{Port: src.Port(), Addr: src.Addr(), ID: 1, MaxLen: xskLoadFrameSize - unix.XDP_PACKET_HEADROOM}
	if err := l.prog.AddService(svc); err != nil {
		return nil, fmt.Errorf("bench xsk load: steering %v on %s: %w", src, iface, err)
	}
	bind := "copy"
	if l.socks[0].ZeroCopy() {
		bind = "zero-copy"
	}
	l.detail = fmt.Sprintf("AF_XDP load on %s: XDP %v mode, %s bind, %d queue(s), %d frames of %d bytes per socket",
		iface, l.prog.Mode(), bind, queues, frames, xskLoadFrameSize)
	return l, nil
}

// txReserve is how many free frames Refill leaves for transmitting.
func (l *xskLoad) txReserve() int { return l.frames / 4 }

// Close stops the steering first (the program's entries of this slot),
// then closes the sockets, the UMEM and the port's kernel socket.
func (l *xskLoad) Close() error {
	var errs []error
	if l.prog != nil {
		errs = append(errs, l.prog.Close())
		l.prog = nil
	}
	if l.umem != nil {
		errs = append(errs, l.umem.Close())
		l.umem = nil
	}
	if l.reserve >= 0 {
		errs = append(errs, unix.Close(l.reserve))
		l.reserve = -1
	}
	return errors.Join(errs...)
}

// drops sums the kernel's drop counters of the sockets: received packets
// lost to a full RX ring or (copy mode) an empty fill ring.
func (l *xskLoad) drops() uint64 {
	var n uint64
	for _, s := range l.socks {
		if st, err := s.Statistics(); err == nil {
			n += st.RXDropped + st.RXRingFull
		}
	}
	return n
}

// bindUDP binds a kernel UDP socket to ap (and keeps it unread).
func bindUDP(ap netip.AddrPort) (int, error) {
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if ap.Addr().Is6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("bench xsk load: socket: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bench xsk load: reserving %v with a kernel socket: %w", ap, err)
	}
	return fd, nil
}

// xskLoadFrames sizes a socket's frames for n outstanding requests: a
// power of two, at least xskLoadMinFrames and 8 per request.
func xskLoadFrames(n int) int {
	f := xskLoadMinFrames
	for f < 8*n {
		f *= 2
	}
	return f
}

// xskClient is the running load: its sockets, slots and scratch space.
type xskClient struct {
	load    *xskLoad
	frames  *gwirFrames
	replies *gwirReplies
	slots   *slotTable
	wantLen int
	rx      []xsk.Desc
	txd     [][]xsk.Desc // per socket
	txSlot  [][]int      // per socket, the slot of each txd entry
	unsent  []int
	pfds    []unix.PollFd
}

func newXSKClient(load *xskLoad, frames *gwirFrames, replies *gwirReplies, n int) *xskClient {
	c := &xskClient{load: load, frames: frames, replies: replies, slots: newSlotTable(n),
		wantLen: proto.HeaderLen + len(frames.payload), rx: make([]xsk.Desc, xskLoadBatch),
		unsent: make([]int, 0, xskLoadBatch)}
	for _, s := range load.socks {
		c.txd = append(c.txd, make([]xsk.Desc, 0, xskLoadBatch))
		c.txSlot = append(c.txSlot, make([]int, 0, xskLoadBatch))
		c.pfds = append(c.pfds, unix.PollFd{Fd: int32(s.FD()), Events: unix.POLLIN})
	}
	return c
}

// transmit sends up to a batch of the pending slots of t, each from the
// socket of its slot (slot mod queues), stamps them sent at now, and
// returns how many it sent. Slots that found no frame or no room in the TX
// ring stay pending, in order.
func (c *xskClient) transmit(t *slotTable, now time.Duration) (int, error) {
	socks := c.load.socks
	for q := range socks {
		c.txd[q], c.txSlot[q] = c.txd[q][:0], c.txSlot[q][:0]
	}
	k := 0
	for ; k < len(t.pending) && k < xskLoadBatch; k++ {
		i := t.pending[k]
		q := i % len(socks)
		s := socks[q]
		addr, ok := s.Alloc()
		if !ok {
			s.ReapCompletions()
			if addr, ok = s.Alloc(); !ok {
				break
			}
		}
		f, err := c.frames.build(s.Frame(addr), t.id(i))
		if err != nil {
			s.Release(addr)
			return 0, err
		}
		c.txd[q] = append(c.txd[q], xsk.Desc{Addr: addr, Len: uint32(len(f))})
		c.txSlot[q] = append(c.txSlot[q], i)
	}
	if k == 0 {
		return 0, nil
	}
	c.unsent = c.unsent[:0]
	for q, s := range socks {
		if len(c.txd[q]) == 0 {
			continue
		}
		n := s.Transmit(c.txd[q])
		for j, i := range c.txSlot[q] {
			if j < n {
				t.sent(i, now)
			} else {
				s.Release(c.txd[q][j].Addr)
				c.unsent = append(c.unsent, i)
			}
		}
		if err := kickXSK(s); err != nil {
			return 0, err
		}
	}
	t.requeue(c.unsent, k)
	return k - len(c.unsent), nil
}

// kickXSK kicks until the kernel has taken the TX ring, within a bound;
// what is left is kicked on the next pass.
func kickXSK(s *xsk.Socket) error {
	for tries := 0; s.TXPending() > 0 && tries < xskLoadMaxKicks; tries++ {
		if err := rawKick(s); err != nil {
			return err
		}
	}
	return nil
}

// rawKick is xsk.Socket.Kick as a raw system call. On veth the kick runs
// the server side's XDP program and AF_XDP copy inside the sendto, tens
// of µs for a batch; a plain system call that long makes the Go scheduler
// hand the P to another thread (sysmon's retake), which cost the load a
// thread wakeup and a context switch per batch. The call never blocks
// (MSG_DONTWAIT), so not telling the scheduler is safe.
func rawKick(s *xsk.Socket) error {
	if !s.TXNeedsWakeup() {
		return nil
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.FD()), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN, unix.EINTR: // sent, or "try later"
		return nil
	}
	return fmt.Errorf("bench xsk load: TX kick on queue %d: sendto: %w", s.Queue(), errno)
}

// receive takes the replies of every socket, records them and reissues
// their slots, gives the frames back to the fill rings, and returns how
// many frames came.
func (c *xskClient) receive(now time.Duration, measuring bool, res *ClientResult, hist histogram) int {
	got := 0
	for _, s := range c.load.socks {
		n := s.Receive(c.rx)
		for _, d := range c.rx[:n] {
			c.handle(s.Packet(d), now, measuring, res, hist)
			s.Release(d.Addr)
		}
		got += n
		if s.TXPending() > 0 {
			rawKick(s)
		}
		s.ReapCompletions()
		if room := s.Free() - c.load.txReserve(); room > 0 && s.Refill(room) > 0 && s.FillNeedsWakeup() {
			s.WakeFill()
		}
	}
	return got
}

func (c *xskClient) handle(frame []byte, now time.Duration, measuring bool, res *ClientResult, hist histogram) {
	f, err := c.replies.parse(frame)
	if err != nil {
		if measuring {
			res.Errors++
		}
		return
	}
	i, ok := c.slots.match(f.RequestID())
	if !ok {
		res.Stale++
		return
	}
	if measuring {
		res.Requests++
		hist.RecordValue(int64(now - c.slots.slots[i].sent))
		if f.Status() != proto.StatusOK || len(f) != c.wantLen {
			res.Errors++
		}
	}
	c.slots.issue(i)
}

// resendLate reissues the slots whose request is older than timeout.
func (c *xskClient) resendLate(now, timeout time.Duration, measuring bool, res *ClientResult) {
	for i := range c.slots.slots {
		s := &c.slots.slots[i]
		if s.active && !s.queued && now-s.sent > timeout {
			if measuring {
				res.Errors++
				res.Timeouts++
				res.Retransmits++
			}
			c.slots.issue(i)
		}
	}
}

// histogram is what the loads record latencies into.
type histogram interface{ RecordValue(int64) error }

func runXSKClient(ctx context.Context, cfg ClientConfig, out io.Writer) (ClientResult, error) {
	var res ClientResult
	dst, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return res, fmt.Errorf("bench xsk load: server address %q: %w", cfg.Addr, err)
	}
	src, err := netip.ParseAddrPort(cfg.Src)
	if err != nil || src.Port() == 0 {
		return res, fmt.Errorf("bench xsk load: --src %q: want the client's IP:PORT on --iface", cfg.Src)
	}
	hw, err := net.ParseMAC(cfg.DstMAC)
	if err != nil || len(hw) != 6 {
		return res, fmt.Errorf("bench xsk load: --dst-mac %q: want the server's Ethernet address: %v", cfg.DstMAC, err)
	}
	ifc, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return res, fmt.Errorf("bench xsk load: --iface %q: %w", cfg.Iface, err)
	}
	if len(ifc.HardwareAddr) != 6 {
		return res, fmt.Errorf("bench xsk load: --iface %s has no Ethernet address", cfg.Iface)
	}
	queues := max(cfg.Queues, 1)
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	frames, err := newGWIRFrames(netstack.MAC(ifc.HardwareAddr), netstack.MAC(hw), src, dst,
		proto.MethodID(echo.EchoMethod), Payload(cfg.PayloadBytes))
	if err != nil {
		return res, err
	}
	if frames.frameLen() > xskLoadFrameSize-unix.XDP_PACKET_HEADROOM {
		return res, fmt.Errorf("bench xsk load: a %d-byte frame does not fit a UMEM frame", frames.frameLen())
	}
	load, err := openXSKLoad(cfg.Iface, ifc.Index, src, queues, xskLoadFrames(cfg.Outstanding))
	if err != nil {
		return res, err
	}
	defer load.Close()
	c := newXSKClient(load, frames, newGWIRReplies(src, dst), cfg.Outstanding)
	epoch := time.Now()
	now := func() time.Duration { return time.Since(epoch) }
	if err := c.waitReady(ctx, now, cfg.ReadyTimeout); err != nil {
		return res, err
	}
	fmt.Fprintln(out, markerReady)
	res.LoadDetail = load.detail

	for i := range c.slots.slots {
		c.slots.issue(i)
	}
	hist := newHistogram()
	win := loadWindow{out: out, start: now() + cfg.Warmup, duration: cfg.Duration, count: cfg.Count}
	lastActive, nextScan := now(), now()+10*time.Millisecond
	// Passes that neither sent nor received are the loop spinning for
	// nothing: their time, in the window, is SpinIdleS.
	var spinIdle time.Duration
	prev, prevIdle := now(), false
	for iter := 0; ; iter++ {
		sent, err := c.transmit(c.slots, now())
		if err != nil {
			return res, err
		}
		t := now()
		if prevIdle && win.measuring {
			spinIdle += t - prev
		}
		n := c.receive(t, win.measuring, &res, hist)
		prev, prevIdle = t, n == 0 && sent == 0
		if n > 0 {
			lastActive = t
			if iter&63 != 0 {
				continue
			}
		}
		if win.advance(t, &res) {
			quantiles(hist, &res)
			res.LoadDrops = load.drops()
			res.SpinIdleS = spinIdle.Seconds()
			return res, nil
		}
		if t >= nextScan {
			nextScan = t + 10*time.Millisecond
			if err := ctx.Err(); err != nil {
				return res, err
			}
			c.resendLate(t, cfg.Timeout, win.measuring, &res)
			res.KernelPath += load.drainReserve()
		}
		if n == 0 && len(c.slots.pending) == 0 && t-lastActive > gwirSpinIdle {
			unix.Poll(c.pfds, 1)
			prevIdle = false // asleep, not spinning
		}
	}
}

// waitReady sends one request every 100 ms until the server answers one,
// then lets stragglers arrive and drops them.
func (c *xskClient) waitReady(ctx context.Context, now func() time.Duration, limit time.Duration) error {
	// The probe's generations start far from the load's, so that a late
	// answer to it never matches a slot.
	probe := newSlotTable(1)
	probe.slots[0].gen = 1 << 31
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		probe.issue(0)
		if _, err := c.transmit(probe, now()); err != nil {
			return err
		}
		for wait := time.Now().Add(100 * time.Millisecond); time.Now().Before(wait); {
			unix.Poll(c.pfds, 10)
			for _, s := range c.load.socks {
				n := s.Receive(c.rx)
				for _, d := range c.rx[:n] {
					_, err := c.replies.parse(s.Packet(d))
					s.Release(d.Addr)
					if err == nil {
						c.drainFor(50 * time.Millisecond)
						return nil
					}
					last = err
				}
				s.ReapCompletions()
				s.Refill(s.Free() - c.load.txReserve())
			}
		}
	}
	if last != nil {
		return fmt.Errorf("bench xsk load: no answer from the server within %v (last frame: %w)", limit, last)
	}
	return fmt.Errorf("bench xsk load: no answer from the server within %v", limit)
}

// drainFor drops whatever arrives for d.
func (c *xskClient) drainFor(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		unix.Poll(c.pfds, 5)
		for _, s := range c.load.socks {
			n := s.Receive(c.rx)
			for _, desc := range c.rx[:n] {
				s.Release(desc.Addr)
			}
			s.ReapCompletions()
			s.Refill(s.Free() - c.load.txReserve())
		}
	}
	c.load.drainReserve()
}

// drainReserve reads and drops what the program passed to the port's
// kernel socket (replies too long for a UMEM frame, or any that came
// while the slot looked stale), and counts it.
func (l *xskLoad) drainReserve() int64 {
	var n int64
	for ; n < 1024; n++ {
		if _, _, err := unix.Recvfrom(l.reserve, l.scratch, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	return n
}

package runtime

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/uring"
	"github.com/zerohop/zerohop/xsk"
	"golang.org/x/sys/unix"
)

// The XSK backend: the bpf program steers the service port to one AF_XDP
// socket per queue, all sharing one UMEM; each loop drives its socket's four
// rings directly and uses its io_uring for TX kicks (SENDMSG), for sleeping
// on the socket (POLL_ADD) and for wakeups. A reply is built in the frame
// the request arrived in and sent from there.

const (
	xskFrameSize   = 4096
	xskBatch       = 64
	xskRingEntries = 256
	xskCQEntries   = 1024
	// xskPollEvery bounds how many spinning passes go by without entering
	// the ring, which runs deferred completions (worker wakeups, kick
	// errors) on a DEFER_TASKRUN ring.
	xskPollEvery = 64
)

type xskBackend struct {
	// mu keeps loopStats from reading socket statistics while release
	// closes the sockets (and their descriptor numbers get reused).
	mu      sync.Mutex
	srv     *Server
	iface   string
	ifindex int
	mtu     int
	prog    *bpf.Program
	umem    *xsk.UMEM
	loops   []*xskLoop
	wg      sync.WaitGroup
}

// newXSKBackend attaches the steering program, creates the UMEM and binds
// one socket per queue, or explains why it cannot.
func newXSKBackend(s *Server) (_ *xskBackend, err error) {
	if s.addr.Port() == 0 {
		return nil, errors.New("needs an explicit port (the XDP program steers by port)")
	}
	if s.addr.Addr().IsLoopback() {
		return nil, errors.New("loopback address: AF_XDP serves a NIC queue; the kernel path is as short on lo")
	}
	iface, err := s.interfaceFor()
	if err != nil {
		return nil, err
	}
	if err := xsk.HaveAFXDP(); err != nil {
		return nil, fmt.Errorf("AF_XDP sockets: %w", err)
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	b := &xskBackend{srv: s, iface: iface, ifindex: ifc.Index, mtu: ifc.MTU}
	defer func() {
		if err != nil {
			b.release()
		}
	}()
	b.prog, err = bpf.Attach(iface, bpf.Options{Pin: s.cfg.pinMaps})
	if err != nil {
		return nil, fmt.Errorf("attaching XDP to %s: %w", iface, err)
	}
	b.umem, err = xsk.NewUMEM(xsk.UMEMConfig{FrameCount: s.cfg.frames, FrameSize: xskFrameSize})
	if err != nil {
		return nil, fmt.Errorf("UMEM of %d frames: %w", s.cfg.frames, err)
	}
	perSocket := s.cfg.frames / len(s.cfg.queues)
	rxRing := ringSize(perSocket/2, 8192)
	txRing := ringSize(perSocket/4, 4096)
	for i, q := range s.cfg.queues {
		sock, err := b.umem.Open(b.ifindex, q, xsk.SocketConfig{FrameCount: perSocket,
			RXSize: rxRing, FillSize: rxRing, TXSize: txRing, CompletionSize: txRing})
		if err != nil {
			return nil, fmt.Errorf("AF_XDP socket on %s queue %d: %w", iface, q, err)
		}
		l := &xskLoop{b: b, sock: sock}
		l.wakeFd = -1 // release may run before init opens it
		b.loops = append(b.loops, l)
		if err := l.init(s, i); err != nil {
			return nil, err
		}
		if err := b.prog.SetSocket(q, sock.FD()); err != nil {
			return nil, fmt.Errorf("registering queue %d's socket: %w", q, err)
		}
	}
	svc := bpf.Service{Port: s.addr.Port(), ID: 1}
	if !s.addr.Addr().IsUnspecified() {
		svc.Addr = s.addr.Addr()
	}
	if err := b.prog.AddService(svc); err != nil {
		return nil, fmt.Errorf("steering port %d: %w", s.addr.Port(), err)
	}
	s.cfg.iface = iface
	return b, nil
}

// ringSize is the largest power of two ≤ min(n, limit), at least 64.
func ringSize(n, limit int) int {
	if n > limit {
		n = limit
	}
	size := 64
	for size*2 <= n {
		size *= 2
	}
	return size
}

// release detaches XDP first, so nothing more is redirected, then closes
// the sockets and the UMEM, then the loops' eventfds.
func (b *xskBackend) release() {
	if b.prog != nil {
		if err := b.prog.Close(); err != nil {
			b.srv.cfg.logger.Error("detaching XDP", "iface", b.iface, "err", err)
		}
		b.prog = nil
	}
	b.mu.Lock()
	if b.umem != nil {
		b.umem.Close()
		b.umem = nil
	}
	b.mu.Unlock()
	for _, l := range b.loops {
		l.closeWake()
	}
}

func (b *xskBackend) start(s *Server) error { return startLoops(&b.wg, b.loops) }

func (b *xskBackend) stop() {
	stopLoops(&b.wg, b.loops)
	b.release()
}

func (b *xskBackend) loopStats() []LoopStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]LoopStats, len(b.loops))
	for i, l := range b.loops {
		out[i] = l.stats.snapshot(l.queue, l.core)
		if b.umem != nil {
			if st, err := l.sock.Statistics(); err == nil {
				out[i].FillRingEmpty = st.RXFillRingEmptyDescs
			}
		}
	}
	return out
}

// owesReplies: every XSK reply is counted by the worker pool until sent.
func (b *xskBackend) owesReplies() bool { return false }

func (b *xskBackend) describe() string {
	mode := "copy"
	if len(b.loops) > 0 && b.loops[0].sock.ZeroCopy() {
		mode = "zero-copy"
	}
	return fmt.Sprintf("AF_XDP on %s, XDP %v mode, %s bind, %d frames of %d bytes", b.iface, b.prog.Mode(), mode,
		b.umem.FrameCount(), b.umem.FrameSize())
}

type xskLoop struct {
	loopBase
	b         *xskBackend
	sock      *xsk.Socket
	rx        []xsk.Desc
	tx        []xsk.Desc // replies not yet taken by the TX ring
	pkt       netstack.Packet
	scratch   []byte
	kickMsg   unix.Msghdr
	pollArmed bool
	sqPending bool
	frameAddr uint64 // the frame being dispatched, for toWorker
	frameLen  int
}

func (l *xskLoop) setup() error {
	if err := l.newRing(xskRingEntries, xskCQEntries); err != nil {
		return err
	}
	l.rx = make([]xsk.Desc, xskBatch)
	l.tx = make([]xsk.Desc, 0, 4*xskBatch)
	l.scratch = make([]byte, xskFrameSize)
	l.disp.toWorker = l.toWorker
	l.sock.Refill(l.sock.Free())
	if l.sock.FillNeedsWakeup() {
		_ = l.sock.WakeFill()
	}
	_, err := l.ring.Submit()
	return err
}

// cleanup has nothing to do: frames still held go with the UMEM, which
// release closes after the loops have stopped.
func (l *xskLoop) cleanup() {}

func (l *xskLoop) serve() error {
	var idle idleClock
	spins := 0
	for !l.stop.Load() {
		worked := false
		n := l.ring.Reap(l.cqes)
		for i := 0; i < n; i++ {
			l.complete(&l.cqes[i])
		}
		got := l.sock.Receive(l.rx)
		for i := 0; i < got; i++ {
			l.onFrame(l.rx[i])
		}
		worked = got > 0
		if l.hasDone.Load() {
			l.sendDone()
			worked = true
		}
		l.flushTX()
		l.sock.ReapCompletions()
		if l.sock.Refill(l.sock.Free()) > 0 && l.sock.FillNeedsWakeup() {
			_ = l.sock.WakeFill()
		}
		if idle.spin(worked, l.srv.cfg.busyPoll) {
			// Spin on the RX ring; enter the ring only to submit a kick
			// or, now and then, to run deferred completions.
			spins++
			if l.sqPending || spins >= xskPollEvery {
				spins, l.sqPending = 0, false
				if _, err := l.ring.SubmitAndWait(0, 0); err != nil {
					return fmt.Errorf("runtime: io_uring_enter: %w", err)
				}
			}
			continue
		}
		// Going to sleep: a level-triggered POLL_ADD wakes us when the RX
		// ring fills; re-check it after arming so no frame is stranded.
		if !l.pollArmed {
			if _, err := l.ring.PrepPollAdd(l.sock.FD(), unix.POLLIN, false, udPoll); err != nil {
				return fmt.Errorf("runtime: arming poll: %w", err)
			}
			l.pollArmed = true
		}
		if l.sock.RXReady() || l.hasDone.Load() || len(l.tx) > 0 {
			if _, err := l.ring.SubmitAndWait(0, 0); err != nil {
				return fmt.Errorf("runtime: io_uring_enter: %w", err)
			}
			continue
		}
		l.sqPending = false
		if err := l.wait(false); err != nil {
			return err
		}
	}
	return nil
}

func (l *xskLoop) complete(c *uring.CQE) {
	switch c.UserData & udTagMask {
	case udPoll:
		l.pollArmed = false
	case udKick:
		// Only failures post a CQE (CQE_SKIP_SUCCESS); EAGAIN and friends
		// mean "kick again later", which the next pass does.
	case udWake:
		if !l.stop.Load() {
			_ = l.armWake()
		}
	}
}

// flushTX moves pending replies to the TX ring and kicks the kernel when it
// asks for it, through a SENDMSG on the socket submitted with the next
// io_uring_enter.
func (l *xskLoop) flushTX() {
	if len(l.tx) > 0 {
		k := l.sock.Transmit(l.tx)
		l.stats.tx.Add(uint64(k))
		l.tx = l.tx[:copy(l.tx, l.tx[k:])]
	}
	if l.sock.TXPending() > 0 && l.sock.TXNeedsWakeup() {
		sqe, err := l.ring.PrepSendmsg(l.sock.FD(), &l.kickMsg, 0, udKick)
		if err != nil {
			return
		}
		sqe.Flags |= uring.SQECQESkipSuccess
		l.sqPending = true
		l.stats.kicks.Add(1)
	}
}

func (l *xskLoop) onFrame(d xsk.Desc) {
	l.stats.rx.Add(1)
	frame := l.sock.Frame(d.Addr)
	if int(d.Len) > len(frame) {
		l.stats.dropped[DropPacket].Add(1)
		l.sock.Release(d.Addr)
		return
	}
	if err := netstack.Parse(frame[:d.Len], l.srv.addr.Port(), &l.pkt); err != nil || l.pkt.Class != netstack.ClassUDP {
		l.stats.dropped[DropPacket].Add(1)
		l.sock.Release(d.Addr)
		return
	}
	peer := l.peer()
	payload := l.pkt.Payload
	room := l.pkt.PayloadRoom()
	limit := l.replyLimit()
	// Build the reply behind the request in the same frame when it fits,
	// else in scratch; either way it then moves to the payload's start.
	off := (len(payload) + 63) &^ 63
	var out []byte
	if len(room)-off >= limit {
		out = room[off : off+limit : off+limit]
	} else {
		out = l.scratch[:limit:limit]
	}
	l.frameAddr, l.frameLen = d.Addr, int(d.Len)
	r, n := l.disp.dispatch(payload, peer, out)
	switch r {
	case replyReady:
		copy(room, out[:n])
		l.queueReply(d.Addr, n)
	case replyDeferred:
		// a worker owns the request; the frame waits for its reply
	default:
		l.sock.Release(d.Addr)
	}
}

func (l *xskLoop) peer() netip.AddrPort {
	if l.pkt.IPv4 != nil {
		return netip.AddrPortFrom(l.pkt.IPv4.SourceAddress(), l.pkt.UDP.SourcePort())
	}
	return netip.AddrPortFrom(l.pkt.IPv6.SourceAddress(), l.pkt.UDP.SourcePort())
}

// replyLimit is the largest GWIR reply that fits both the interface's MTU
// (with the request's IP header) and the request's frame.
func (l *xskLoop) replyLimit() int {
	ipHeader := 40
	if l.pkt.IPv4 != nil {
		ipHeader = l.pkt.IPv4.HeaderLength()
	}
	limit := l.b.mtu - ipHeader - 8
	if limit > proto.MaxFrameLen {
		limit = proto.MaxFrameLen
	}
	// The reply is moved to the request payload's place in the frame, so it
	// cannot be longer than the frame holds from there (about 3.8 KiB in
	// copy mode), whatever the MTU.
	if room := len(l.pkt.PayloadRoom()); limit > room {
		limit = room
	}
	if limit > len(l.scratch) {
		limit = len(l.scratch)
	}
	return limit
}

// queueReply turns the parsed request frame at addr, whose payload room now
// starts with an n-byte GWIR reply, into the reply packet and queues it.
func (l *xskLoop) queueReply(addr uint64, n int) {
	reply, err := netstack.Reply(&l.pkt, n)
	if err != nil {
		l.stats.dropped[DropPacket].Add(1)
		l.sock.Release(addr)
		return
	}
	l.tx = append(l.tx, xsk.Desc{Addr: addr, Len: uint32(len(reply))})
}

func (l *xskLoop) toWorker(h *handlerEntry, frame proto.Frame, peer netip.AddrPort) bool {
	token := l.frameAddr | uint64(l.frameLen)<<48
	return l.srv.workers.submit(l, &l.stats, h, frame, peer, l.queue, l.replyLimit(), token)
}

// sendDone sends the replies of finished blocking handlers from the frames
// their requests arrived in.
func (l *xskLoop) sendDone() {
	jobs := l.takeDone()
	for i, j := range jobs {
		jobs[i] = nil
		addr, length := j.token&(1<<48-1), int(j.token>>48)
		if j.n == 0 {
			l.sock.Release(addr)
			l.srv.workers.release(j)
			continue
		}
		frame := l.sock.Frame(addr)
		if err := netstack.Parse(frame[:length], l.srv.addr.Port(), &l.pkt); err != nil || len(l.pkt.PayloadRoom()) < j.n {
			l.stats.dropped[DropPacket].Add(1)
			l.sock.Release(addr)
			l.srv.workers.release(j)
			continue
		}
		copy(l.pkt.PayloadRoom(), j.out[:j.n])
		l.srv.workers.release(j)
		l.queueReply(addr, j.n)
	}
}

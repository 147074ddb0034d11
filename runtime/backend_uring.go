package runtime

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// The uring backend: one SO_REUSEPORT UDP socket per loop, a multishot
// RECVMSG into a provided-buffer ring for requests, one SENDMSG per reply
// from a preallocated send slot, and an eventfd READ through which workers
// and Shutdown wake the loop.

const (
	// uringMaxDatagram bounds requests and replies on this backend. A larger
	// request is answered TOO_LARGE (its header is intact).
	uringMaxDatagram = 8192
	uringRecvBuffers = 512
	uringSendSlots   = 512
	uringRingEntries = 1024
	uringCQEntries   = 4096
	uringRecvGroup   = 1
	uringNameRoom    = unix.SizeofSockaddrInet6
	uringRecvBufSize = uringMaxDatagram + 64 // + io_uring_recvmsg_out and the name
	uringSocketBuf   = 4 << 20
)

type uringBackend struct {
	srv   *Server
	loops []*uringLoop
	wg    sync.WaitGroup
}

// newUringBackend opens and binds one socket per queue entry, so address
// errors surface from Listen. The rings are made later, on the loops'
// threads.
func newUringBackend(s *Server) (*uringBackend, error) {
	b := &uringBackend{srv: s}
	for i := range s.cfg.queues {
		fd, bound, err := openReusePortUDP(s.addr)
		if err != nil {
			b.closeSockets()
			return nil, err
		}
		s.addr = bound // port 0: the first socket picks, the others share it
		l := &uringLoop{b: b, fd: fd, listenFd: -1}
		l.wakeFd = -1 // closeFds may run before init opens it
		b.loops = append(b.loops, l)
		if l.listenFd, err = openReusePortTCP(bound); err != nil {
			b.closeSockets()
			return nil, err
		}
		if err := l.init(s, i); err != nil {
			b.closeSockets()
			return nil, err
		}
	}
	return b, nil
}

// openReusePort opens a non-blocking SO_REUSEPORT socket of type sotype
// (SOCK_DGRAM, SOCK_STREAM) bound to addr — dual-stack for a wildcard IPv6
// address — after setup has set its options, and returns it with the
// address it got (the kernel's port when addr's is 0).
func openReusePort(addr netip.AddrPort, sotype int, setup func(fd int) error) (int, netip.AddrPort, error) {
	family := unix.AF_INET6
	if addr.Addr().Is4() {
		family = unix.AF_INET
	}
	network := "udp"
	if sotype == unix.SOCK_STREAM {
		network = "tcp"
	}
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, addr, fmt.Errorf("runtime: %s socket: %w", network, err)
	}
	leak.Track(fd)
	fail := func(op string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		leak.Untrack(fd)
		return -1, addr, fmt.Errorf("runtime: %s %s %s: %w", network, op, addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("SO_REUSEPORT", err)
	}
	if family == unix.AF_INET6 && addr.Addr().IsUnspecified() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if setup != nil {
		if err := setup(fd); err != nil {
			return fail("setsockopt", err)
		}
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	switch sa := got.(type) {
	case *unix.SockaddrInet4:
		addr = netip.AddrPortFrom(addr.Addr(), uint16(sa.Port))
	case *unix.SockaddrInet6:
		addr = netip.AddrPortFrom(addr.Addr(), uint16(sa.Port))
	}
	return fd, addr, nil
}

// openReusePortUDP opens one of the backend's UDP sockets, with a deep
// receive buffer to absorb bursts while its loop is preempted (FORCE needs
// CAP_NET_ADMIN; the plain option is capped by net.core.rmem_max).
func openReusePortUDP(addr netip.AddrPort) (int, netip.AddrPort, error) {
	return openReusePort(addr, unix.SOCK_DGRAM, func(fd int) error {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, uringSocketBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, uringSocketBuf)
		}
		return nil
	})
}

func (b *uringBackend) closeSockets() {
	for _, l := range b.loops {
		l.closeFds()
	}
}

func (b *uringBackend) start(s *Server) error { return startLoops(&b.wg, b.loops) }

func (b *uringBackend) stop() {
	stopLoops(&b.wg, b.loops)
	b.closeSockets()
}

func (b *uringBackend) loopStats() []LoopStats {
	out := make([]LoopStats, len(b.loops))
	for i, l := range b.loops {
		out[i] = l.stats.snapshot(l.queue, l.core)
	}
	return out
}

func (b *uringBackend) owesReplies() bool {
	for _, l := range b.loops {
		if l.tcpUnsent.Load() > 0 {
			return true
		}
	}
	return false
}

func (b *uringBackend) describe() string {
	return fmt.Sprintf("%d SO_REUSEPORT UDP socket(s) and TCP listener(s), io_uring multishot RECVMSG/ACCEPT, %d-byte frames", len(b.loops), uringMaxDatagram)
}

type uringSend struct {
	buf  []byte
	name [unix.SizeofSockaddrInet6]byte
	iov  unix.Iovec
	msg  unix.Msghdr
	job  *job // a worker's reply being sent from job.out
}

type uringLoop struct {
	loopBase
	b        *uringBackend
	fd       int
	listenFd int

	tcpBufs     *uring.BufferRing
	conns       []tcpConn
	freeConns   []uint32
	tcpScratch  []byte
	tcpCurrent  int // connection being dispatched, -1 for UDP
	acceptArmed bool
	// tcpStarved lists connections whose receive found no free buffer;
	// tcpRecycled says a buffer came back since they were last retried.
	tcpStarved, tcpStarvedSpare []uint32
	tcpRecycled                 bool
	// tcpUnsent counts connections owed replies, for Shutdown's drain.
	tcpUnsent atomic.Int64

	bufs      *uring.BufferRing
	recvMsg   unix.Msghdr
	recvArmed bool
	sends     []uringSend
	freeSends []uint32
}

func (l *uringLoop) setup() error {
	if err := l.newRing(uringRingEntries, uringCQEntries); err != nil {
		return err
	}
	var err error
	l.bufs, err = l.ring.NewBufferRing(uringRecvGroup, uringRecvBuffers, uringRecvBufSize)
	if err != nil {
		return fmt.Errorf("runtime: uring backend, queue %d: provided buffers: %w", l.queue, err)
	}
	l.recvMsg.Namelen = uringNameRoom
	l.sends = make([]uringSend, uringSendSlots)
	l.freeSends = make([]uint32, 0, uringSendSlots)
	for i := range l.sends {
		l.sends[i].buf = make([]byte, uringMaxDatagram)
		l.freeSends = append(l.freeSends, uint32(i))
	}
	l.disp.toWorker = l.toWorker
	if err := l.armRecv(); err != nil {
		return err
	}
	if err := l.tcpSetup(); err != nil {
		return err
	}
	_, err = l.ring.Submit()
	return err
}

func (l *uringLoop) armRecv() error {
	if _, err := l.ring.PrepRecvmsgMultishot(l.fd, &l.recvMsg, uringRecvGroup, 0, udRecv); err != nil {
		return fmt.Errorf("runtime: arming receive: %w", err)
	}
	l.recvArmed = true
	return nil
}

// serve is the event loop: reap and handle completions, send finished
// blocking replies, re-arm the receive if it ended, then spin or sleep.
func (l *uringLoop) serve() error {
	var idle idleClock
	for !l.stop.Load() {
		worked := false
		for {
			n := l.ring.Reap(l.cqes)
			for i := 0; i < n; i++ {
				l.complete(&l.cqes[i])
			}
			worked = worked || n > 0
			if n < len(l.cqes) {
				break
			}
		}
		l.bufs.Publish()
		l.retryStarved()
		if !l.acceptArmed {
			if err := l.armAccept(); err != nil {
				return err
			}
		}
		if l.hasDone.Load() {
			l.sendDone()
			worked = true
		}
		if !l.recvArmed {
			if err := l.armRecv(); err != nil {
				return err
			}
		}
		if err := l.wait(idle.spin(worked, l.srv.cfg.busyPoll)); err != nil {
			return err
		}
	}
	return nil
}

func (l *uringLoop) complete(c *uring.CQE) {
	switch c.UserData & udTagMask {
	case udRecv:
		if !c.More() {
			l.recvArmed = false
		}
		if c.Res < 0 {
			if c.NoBuffers() {
				l.stats.rearms.Add(1)
			}
			return
		}
		id, ok := c.BufferID()
		if !ok {
			return
		}
		l.onDatagram(l.bufs.Buffer(id)[:c.Res])
		l.bufs.Put(id)
	case udSend:
		slot := uint32(c.UserData &^ udTagMask)
		s := &l.sends[slot]
		if c.Res >= 0 {
			l.stats.tx.Add(1)
		} else {
			l.stats.dropped[DropTxFull].Add(1)
		}
		if s.job != nil {
			l.srv.workers.release(s.job)
			s.job = nil
		}
		l.freeSends = append(l.freeSends, slot)
	case udWake:
		if !l.stop.Load() {
			_ = l.armWake()
		}
	default:
		l.tcpComplete(c)
	}
}

func (l *uringLoop) onDatagram(buf []byte) {
	l.stats.rx.Add(1)
	msg, err := uring.ParseRecvmsgOut(buf, uringNameRoom, 0)
	if err != nil {
		l.stats.dropped[DropTruncated].Add(1)
		return
	}
	peer, ok := uring.SockaddrAddrPort(msg.Name)
	if !ok {
		l.stats.dropped[DropPacket].Add(1)
		return
	}
	slot, ok := l.allocSend()
	if !ok {
		l.stats.dropped[DropTxFull].Add(1)
		return
	}
	s := &l.sends[slot]
	var r reply
	var n int
	if msg.Truncated() {
		r, n = l.disp.tooLarge(msg.Payload, s.buf)
	} else {
		r, n = l.disp.dispatch(msg.Payload, peer, s.buf)
	}
	if r != replyReady {
		l.freeSends = append(l.freeSends, slot)
		return
	}
	l.send(slot, s.buf[:n], peer)
}

func (l *uringLoop) allocSend() (uint32, bool) {
	n := len(l.freeSends)
	if n == 0 {
		return 0, false
	}
	slot := l.freeSends[n-1]
	l.freeSends = l.freeSends[:n-1]
	return slot, true
}

func (l *uringLoop) send(slot uint32, frame []byte, peer netip.AddrPort) {
	s := &l.sends[slot]
	nameLen := uring.PutSockaddr(s.name[:], peer)
	s.iov.Base = &frame[0]
	s.iov.SetLen(len(frame))
	s.msg = unix.Msghdr{Name: &s.name[0], Namelen: uint32(nameLen), Iov: &s.iov, Iovlen: 1}
	if _, err := l.ring.PrepSendmsg(l.fd, &s.msg, 0, udSend|uint64(slot)); err != nil {
		l.stats.dropped[DropTxFull].Add(1)
		if s.job != nil {
			l.srv.workers.release(s.job)
			s.job = nil
		}
		l.freeSends = append(l.freeSends, slot)
	}
}

// toWorker hands a blocking request to the pool; the token says where the
// reply goes: 0 for UDP, a TCP connection's slot + 1.
func (l *uringLoop) toWorker(h *handlerEntry, frame proto.Frame, peer netip.AddrPort) bool {
	return l.srv.workers.submit(l, &l.stats, h, frame, peer, l.queue, uringMaxDatagram, uint64(l.tcpCurrent+1))
}

func (l *uringLoop) sendDone() {
	jobs := l.takeDone()
	for i, j := range jobs {
		jobs[i] = nil
		if j.token != 0 {
			l.tcpJobDone(j)
			continue
		}
		if j.n == 0 {
			l.srv.workers.release(j)
			continue
		}
		slot, ok := l.allocSend()
		if !ok {
			l.stats.dropped[DropTxFull].Add(1)
			l.srv.workers.release(j)
			continue
		}
		l.sends[slot].job = j
		l.send(slot, j.out[:j.n], j.peer)
	}
}

// releaseSendJobs returns jobs whose replies were still being sent when the
// loop stopped, after the ring's close cancelled those sends.
func (l *uringLoop) cleanup() {
	l.releaseSendJobs()
	if l.conns != nil {
		l.tcpCleanup()
	}
}

func (l *uringLoop) releaseSendJobs() {
	for i := range l.sends {
		if j := l.sends[i].job; j != nil {
			l.sends[i].job = nil
			l.srv.workers.release(j)
		}
	}
}

func (l *uringLoop) closeFds() {
	for _, fd := range []*int{&l.fd, &l.listenFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			leak.Untrack(*fd)
			*fd = -1
		}
	}
	l.closeWake()
}

package runtime

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// TCP on the uring backend: each loop has its own SO_REUSEPORT listener on
// the server's port with a multishot ACCEPT; a connection carries GWIR
// frames back to back (proto.Stream reassembles them across reads), read
// one chunk at a time into a provided buffer, and gets its replies in
// request order. A request for a blocking handler pauses the connection's
// processing until its reply is queued, which keeps that order.

const (
	tcpMaxConns    = 1024
	tcpRecvGroup   = 2
	tcpRecvBuffers = 256
	tcpRecvBufSize = 16 << 10
	// tcpMaxPending stops reading from a connection whose peer does not
	// read its replies, so it cannot make the loop buffer without bound.
	tcpMaxPending = 256 << 10
	tcpBacklog    = 1024

	udAccept  uint64 = 6 << 56
	udTCPRecv uint64 = 7 << 56
	udTCPSend uint64 = 8 << 56
)

type tcpConn struct {
	fd        int
	peer      netip.AddrPort
	stream    *proto.Stream
	streamBuf []byte
	chunk     int // provided buffer the stream is reading, -1 for none
	pending   []byte
	inflight  []byte
	sent      int
	sending   bool
	recving   bool
	blocked   bool // a blocking handler owns the current request
	// readDone: the peer has finished sending (EOF), or the stream cannot
	// go on (lost frame sync, a frame too large to hold). Nothing more is
	// read, but the replies already due are still sent before the close.
	readDone bool
	// aborted: a send or receive failed; nothing more is sent either.
	aborted bool
	// starved: the last receive found no free buffer; it is retried once a
	// buffer is recycled rather than spun on.
	starved bool
	// unsent: counted in uringLoop.tcpUnsent (replies owed to the peer).
	unsent bool
}

// openReusePortTCP opens and listens on one of the backend's TCP sockets.
func openReusePortTCP(addr netip.AddrPort) (int, error) {
	fd, _, err := openReusePort(addr, unix.SOCK_STREAM, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return -1, err
	}
	if err := unix.Listen(fd, tcpBacklog); err != nil {
		unix.Close(fd)
		leak.Untrack(fd)
		return -1, fmt.Errorf("runtime: tcp listen %s: %w", addr, err)
	}
	return fd, nil
}

func (l *uringLoop) tcpSetup() error {
	var err error
	l.tcpBufs, err = l.ring.NewBufferRing(tcpRecvGroup, tcpRecvBuffers, tcpRecvBufSize)
	if err != nil {
		return fmt.Errorf("runtime: uring backend, queue %d: tcp buffers: %w", l.queue, err)
	}
	l.conns = make([]tcpConn, tcpMaxConns)
	l.freeConns = make([]uint32, 0, tcpMaxConns)
	for i := tcpMaxConns - 1; i >= 0; i-- {
		l.conns[i] = tcpConn{fd: -1, chunk: -1}
		l.freeConns = append(l.freeConns, uint32(i))
	}
	l.tcpScratch = make([]byte, uringMaxDatagram)
	l.tcpCurrent = -1
	return l.armAccept()
}

func (l *uringLoop) armAccept() error {
	if _, err := l.ring.PrepAcceptMultishot(l.listenFd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, udAccept); err != nil {
		return fmt.Errorf("runtime: arming accept: %w", err)
	}
	l.acceptArmed = true
	return nil
}

func (l *uringLoop) tcpComplete(c *uring.CQE) {
	slot := uint32(c.UserData &^ udTagMask)
	switch c.UserData & udTagMask {
	case udAccept:
		if !c.More() {
			l.acceptArmed = false
		}
		if c.Res >= 0 {
			l.tcpAccepted(int(c.Res))
		}
	case udTCPRecv:
		conn := &l.conns[slot]
		conn.recving = false
		switch {
		case c.Res > 0:
			id, ok := c.BufferID()
			if !ok {
				conn.aborted = true
				break
			}
			conn.chunk = int(id)
			l.stats.rx.Add(1)
			if err := conn.stream.Feed(l.tcpBufs.Buffer(id)[:c.Res]); err != nil {
				conn.readDone = true
			}
		case c.NoBuffers():
			l.stats.rearms.Add(1)
			conn.starved = true
			l.tcpStarved = append(l.tcpStarved, slot)
		case c.Res == 0: // the peer is done sending; it still gets its replies
			conn.readDone = true
		default:
			conn.aborted = true
		}
		l.tcpProcess(slot)
	case udTCPSend:
		conn := &l.conns[slot]
		conn.sending = false
		if c.Res < 0 {
			conn.aborted = true
		} else {
			conn.sent += int(c.Res)
			if conn.sent == len(conn.inflight) {
				conn.inflight, conn.sent = conn.inflight[:0], 0
			}
		}
		l.tcpProcess(slot)
	}
}

func (l *uringLoop) tcpAccepted(fd int) {
	leak.Track(fd)
	n := len(l.freeConns)
	if n == 0 {
		l.stats.overloaded.Add(1)
		unix.Close(fd)
		leak.Untrack(fd)
		return
	}
	slot := l.freeConns[n-1]
	l.freeConns = l.freeConns[:n-1]
	conn := &l.conns[slot]
	var peer netip.AddrPort
	if sa, err := unix.Getpeername(fd); err == nil {
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			peer = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			peer = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		}
	}
	if conn.streamBuf == nil {
		conn.streamBuf = make([]byte, uringMaxDatagram)
	}
	*conn = tcpConn{fd: fd, peer: peer, stream: proto.NewStream(conn.streamBuf), streamBuf: conn.streamBuf,
		chunk: -1, pending: conn.pending[:0], inflight: conn.inflight[:0]}
	l.tcpProcess(slot)
}

// tcpProcess runs a connection forward: handle the frames its stream holds
// (unless a blocking handler owns one), send what is pending, read more, or
// close it once nothing is owed and nothing is in flight.
func (l *uringLoop) tcpProcess(slot uint32) {
	conn := &l.conns[slot]
	if conn.fd < 0 {
		return // closed while on the starved list
	}
	for !conn.blocked && !conn.readDone && !conn.aborted && conn.chunk >= 0 {
		frame, err := conn.stream.Next()
		if frame == nil && err == nil {
			l.recycleTCP(conn)
			break
		}
		if errors.Is(err, proto.ErrMagic) || errors.Is(err, proto.ErrVersion) {
			l.stats.dropped[dropFor(err.(proto.Error))].Add(1)
			conn.readDone = true // lost frame sync: nothing after this can be trusted
			break
		}
		var r reply
		var n int
		l.tcpCurrent = int(slot)
		if errors.Is(err, proto.ErrFrameTooLarge) {
			r, n = l.disp.tooLarge(frame, l.tcpScratch)
			conn.readDone = true // the stream cannot skip the frame's body
		} else {
			r, n = l.disp.dispatchParsed(frame, frame, err, conn.peer, l.tcpScratch)
		}
		l.tcpCurrent = -1
		switch r {
		case replyReady:
			conn.pending = append(conn.pending, l.tcpScratch[:n]...)
			l.stats.tx.Add(1)
		case replyDeferred:
			conn.blocked = true
		}
	}
	if conn.chunk >= 0 && (conn.readDone || conn.aborted) {
		l.recycleTCP(conn)
	}
	if !conn.sending && !conn.aborted && (len(conn.inflight) > 0 || len(conn.pending) > 0) {
		if len(conn.inflight) == 0 {
			conn.inflight, conn.pending = conn.pending, conn.inflight[:0]
		}
		if _, err := l.ring.PrepSend(conn.fd, conn.inflight[conn.sent:], unix.MSG_NOSIGNAL, udTCPSend|uint64(slot)); err == nil {
			conn.sending = true
		} else {
			conn.aborted = true
		}
	}
	if !conn.recving && !conn.readDone && !conn.aborted && !conn.blocked && !conn.starved &&
		conn.chunk < 0 && len(conn.pending) < tcpMaxPending {
		if _, err := l.ring.PrepRecvSelect(conn.fd, tcpRecvGroup, 0, udTCPRecv|uint64(slot)); err == nil {
			conn.recving = true
		} else {
			conn.aborted = true
		}
	}
	owed := len(conn.pending) > 0 || len(conn.inflight) > 0
	if !conn.sending && !conn.recving && !conn.blocked && (conn.aborted || conn.readDone && !owed) {
		l.tcpClose(slot)
		return
	}
	l.setUnsent(conn, conn.blocked || owed)
}

// setUnsent keeps tcpUnsent, which Shutdown waits on, equal to the number
// of connections that are owed replies.
func (l *uringLoop) setUnsent(conn *tcpConn, unsent bool) {
	if unsent == conn.unsent {
		return
	}
	conn.unsent = unsent
	if unsent {
		l.tcpUnsent.Add(1)
	} else {
		l.tcpUnsent.Add(-1)
	}
}

func (l *uringLoop) recycleTCP(conn *tcpConn) {
	l.tcpBufs.Recycle(uint16(conn.chunk))
	conn.chunk = -1
	l.tcpRecycled = true
}

// retryStarved re-arms the receives that found no buffer, once some buffer
// has come back since.
func (l *uringLoop) retryStarved() {
	if len(l.tcpStarved) == 0 || !l.tcpRecycled {
		return
	}
	l.tcpRecycled = false
	starved := l.tcpStarved
	l.tcpStarved = l.tcpStarvedSpare[:0]
	for _, slot := range starved {
		l.conns[slot].starved = false
		l.tcpProcess(slot)
	}
	l.tcpStarvedSpare = starved[:0]
}

func (l *uringLoop) tcpClose(slot uint32) {
	conn := &l.conns[slot]
	if conn.fd < 0 {
		return
	}
	l.setUnsent(conn, false)
	if conn.chunk >= 0 {
		l.recycleTCP(conn)
	}
	unix.Close(conn.fd)
	leak.Untrack(conn.fd)
	conn.fd = -1
	l.freeConns = append(l.freeConns, slot)
}

// tcpJobDone queues a blocking handler's reply on its connection, in order,
// and lets the connection go on.
func (l *uringLoop) tcpJobDone(j *job) {
	slot := uint32(j.token - 1)
	conn := &l.conns[slot]
	if j.n > 0 && !conn.aborted {
		conn.pending = append(conn.pending, j.out[:j.n]...)
		l.stats.tx.Add(1)
	}
	l.srv.workers.release(j)
	conn.blocked = false
	l.tcpProcess(slot)
}

// tcpCleanup closes the listener and every connection after the ring (and
// with it every operation on them) is gone.
func (l *uringLoop) tcpCleanup() {
	for i := range l.conns {
		l.tcpClose(uint32(i))
	}
}

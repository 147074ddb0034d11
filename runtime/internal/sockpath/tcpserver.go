package sockpath

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// TCP on a loop: each loop has its own SO_REUSEPORT listener on the
// server's port with a multishot ACCEPT; a connection carries GWIR frames
// back to back (proto.Stream reassembles them across reads), read one
// chunk at a time into a provided buffer, and gets its replies in request
// order. A request for a blocking handler pauses the connection's
// processing until its reply is queued, which keeps that order.

const (
	tcpMaxConns    = 1024
	tcpRecvBuffers = 256
	tcpRecvBufSize = 16 << 10
	// tcpMaxPending stops reading from a connection whose peer does not
	// read its replies, so it cannot make the loop buffer without bound.
	tcpMaxPending = 256 << 10
)

// user_data kinds of the TCP server source (| connection slot).
const (
	tcpAccept uint64 = 0
	tcpRecv   uint64 = 1 << 40
	tcpSend   uint64 = 2 << 40
	tcpKind   uint64 = 0xff << 40
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
	// unsent: counted in TCPServer.unsent (replies owed to the peer).
	unsent bool
}

// TCPServer serves GWIR over TCP connections accepted on one listener,
// on the loop it is added to.
type TCPServer struct {
	listenFd int
	engine.ServerSource

	bufs        *uring.BufferRing
	conns       []tcpConn
	freeConns   []uint32
	scratch     []byte
	current     uint32 // connection being dispatched, for Submit
	acceptArmed bool
	// starved lists connections whose receive found no free buffer;
	// recycled says a buffer came back since they were last retried.
	starved, starvedSpare []uint32
	recycled              bool
	// unsent counts connections owed replies, for Shutdown's drain.
	unsent atomic.Int64
}

// NewTCPServer makes the source for a listener from OpenTCPListener.
func NewTCPServer(listenFd int) *TCPServer { return &TCPServer{listenFd: listenFd} }

// OwesReplies reports whether some connection is still owed replies.
func (t *TCPServer) OwesReplies() bool { return t.unsent.Load() > 0 }

// Setup implements engine.Source.
func (t *TCPServer) Setup(l *engine.Loop, tag engine.Tag) error {
	t.Bind(l, tag)
	var err error
	t.bufs, err = l.Ring().NewBufferRing(l.BufferGroup(), tcpRecvBuffers, tcpRecvBufSize)
	if err != nil {
		return fmt.Errorf("runtime: loop %d: tcp buffers: %w", l.Config().Index, err)
	}
	t.conns = make([]tcpConn, tcpMaxConns)
	t.freeConns = make([]uint32, 0, tcpMaxConns)
	for i := tcpMaxConns - 1; i >= 0; i-- {
		t.conns[i] = tcpConn{fd: -1, chunk: -1}
		t.freeConns = append(t.freeConns, uint32(i))
	}
	t.scratch = make([]byte, MaxDatagram)
	return t.armAccept()
}

func (t *TCPServer) armAccept() error {
	if _, err := t.Loop.Ring().PrepAcceptMultishot(t.listenFd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, t.Tag.With(tcpAccept)); err != nil {
		return fmt.Errorf("runtime: arming accept: %w", err)
	}
	t.acceptArmed = true
	return nil
}

// Complete implements engine.Source.
func (t *TCPServer) Complete(c *uring.CQE, data uint64) {
	slot := uint32(data &^ tcpKind)
	switch data & tcpKind {
	case tcpAccept:
		if !c.More() {
			t.acceptArmed = false
		}
		if c.Res >= 0 {
			t.accepted(int(c.Res))
		} else if err := c.Err(); !errors.Is(err, unix.ECANCELED) {
			t.Warn.CQEError(t.C, engine.CQEAccept, t.Queue, err)
		}
	case tcpRecv:
		conn := &t.conns[slot]
		conn.recving = false
		switch {
		case c.Res > 0:
			id, ok := c.BufferID()
			if !ok {
				conn.aborted = true
				break
			}
			conn.chunk = int(id)
			t.C.RX.Add(1)
			if err := conn.stream.Feed(t.bufs.Buffer(id)[:c.Res]); err != nil {
				conn.readDone = true
			}
		case c.NoBuffers():
			t.C.Rearms.Add(1)
			conn.starved = true
			t.starved = append(t.starved, slot)
		case c.Res == 0: // the peer is done sending; it still gets its replies
			conn.readDone = true
		default:
			conn.aborted = true
		}
		t.process(slot)
	case tcpSend:
		conn := &t.conns[slot]
		conn.sending = false
		if c.Res < 0 {
			conn.aborted = true
		} else {
			conn.sent += int(c.Res)
			if conn.sent == len(conn.inflight) {
				conn.inflight, conn.sent = conn.inflight[:0], 0
			}
		}
		t.process(slot)
	}
}

func (t *TCPServer) accepted(fd int) {
	leak.Track(fd)
	n := len(t.freeConns)
	if n == 0 {
		t.C.Overloaded.Add(1)
		closeFd(fd)
		return
	}
	slot := t.freeConns[n-1]
	t.freeConns = t.freeConns[:n-1]
	conn := &t.conns[slot]
	var peer netip.AddrPort
	if sa, err := unix.Getpeername(fd); err == nil {
		peer, _ = AddrPortOf(sa)
	}
	if conn.streamBuf == nil {
		conn.streamBuf = make([]byte, MaxDatagram)
	}
	*conn = tcpConn{fd: fd, peer: peer, stream: proto.NewStream(conn.streamBuf), streamBuf: conn.streamBuf,
		chunk: -1, pending: conn.pending[:0], inflight: conn.inflight[:0]}
	t.process(slot)
}

// process runs a connection forward: handle the frames its stream holds
// (unless a blocking handler owns one), send what is pending, read more,
// or close it once nothing is owed and nothing is in flight.
func (t *TCPServer) process(slot uint32) {
	conn := &t.conns[slot]
	if conn.fd < 0 {
		return // closed while on the starved list
	}
	for !conn.blocked && !conn.readDone && !conn.aborted && conn.chunk >= 0 {
		frame, err := conn.stream.Next()
		if frame == nil && err == nil {
			t.recycle(conn)
			break
		}
		if errors.Is(err, proto.ErrMagic) || errors.Is(err, proto.ErrVersion) {
			t.Warn.Drop(t.C, engine.PathTCP, engine.DropForParse(err.(proto.Error)), t.Queue)
			conn.readDone = true // lost frame sync: nothing after this can be trusted
			break
		}
		var r engine.Outcome
		var reply []byte
		t.current = slot
		if errors.Is(err, proto.ErrFrameTooLarge) {
			r, reply = t.Disp.TooLarge(frame, engine.PathTCP, t.scratch)
			conn.readDone = true // the stream cannot skip the frame's body
		} else {
			// Raw, not frame: a sealed frame's header view is all Parse
			// gives back, and the sealer opens the whole of it.
			r, reply = t.Disp.DispatchParsed(conn.stream.Raw(), frame, err, conn.peer, engine.PathTCP, t.scratch, t)
		}
		switch r {
		case engine.Ready:
			conn.pending = append(conn.pending, reply...)
			t.C.TX.Add(1)
		case engine.Deferred:
			conn.blocked = true
		}
	}
	if conn.chunk >= 0 && (conn.readDone || conn.aborted) {
		t.recycle(conn)
	}
	ring := t.Loop.Ring()
	if !conn.sending && !conn.aborted && (len(conn.inflight) > 0 || len(conn.pending) > 0) {
		if len(conn.inflight) == 0 {
			conn.inflight, conn.pending = conn.pending, conn.inflight[:0]
		}
		if _, err := ring.PrepSend(conn.fd, conn.inflight[conn.sent:], unix.MSG_NOSIGNAL, t.Tag.With(tcpSend|uint64(slot))); err == nil {
			conn.sending = true
		} else {
			conn.aborted = true
		}
	}
	if !conn.recving && !conn.readDone && !conn.aborted && !conn.blocked && !conn.starved &&
		conn.chunk < 0 && len(conn.pending) < tcpMaxPending {
		if _, err := ring.PrepRecvSelect(conn.fd, t.bufs.Group(), 0, t.Tag.With(tcpRecv|uint64(slot))); err == nil {
			conn.recving = true
		} else {
			conn.aborted = true
		}
	}
	owed := len(conn.pending) > 0 || len(conn.inflight) > 0
	if !conn.sending && !conn.recving && !conn.blocked && (conn.aborted || conn.readDone && !owed) {
		t.close(slot)
		return
	}
	t.setUnsent(conn, conn.blocked || owed)
}

// Submit implements engine.Submitter for the connection being dispatched.
func (t *TCPServer) Submit(m *engine.Method, req *engine.Request) bool {
	route := engine.Route{Conn: t.current}
	return t.Loop.Submit(m, req, MaxDatagram, t.Tag.Source(), &route)
}

// setUnsent keeps unsent, which Shutdown waits on, equal to the number of
// connections that are owed replies.
func (t *TCPServer) setUnsent(conn *tcpConn, unsent bool) {
	if unsent == conn.unsent {
		return
	}
	conn.unsent = unsent
	if unsent {
		t.unsent.Add(1)
	} else {
		t.unsent.Add(-1)
	}
}

func (t *TCPServer) recycle(conn *tcpConn) {
	t.bufs.Recycle(uint16(conn.chunk))
	conn.chunk = -1
	t.recycled = true
}

// Poll implements engine.Source: it re-arms the receives that found no
// buffer, once some buffer has come back since, and the accept.
func (t *TCPServer) Poll() bool {
	if !t.acceptArmed && !t.Loop.Stopping() {
		if err := t.armAccept(); err != nil {
			t.Warn.CQEError(t.C, engine.CQEAccept, t.Queue, err)
		}
	}
	if len(t.starved) == 0 || !t.recycled {
		return false
	}
	t.recycled = false
	starved := t.starved
	t.starved = t.starvedSpare[:0]
	for _, slot := range starved {
		t.conns[slot].starved = false
		t.process(slot)
	}
	t.starvedSpare = starved[:0]
	return true
}

// Idle implements engine.Source.
func (t *TCPServer) Idle() (bool, time.Duration, error) { return false, 0, nil }

func (t *TCPServer) close(slot uint32) {
	conn := &t.conns[slot]
	if conn.fd < 0 {
		return
	}
	t.setUnsent(conn, false)
	if conn.chunk >= 0 {
		t.recycle(conn)
	}
	closeFd(conn.fd)
	conn.fd = -1
	t.freeConns = append(t.freeConns, slot)
}

// JobDone implements engine.Source: a blocking handler's reply is queued
// on its connection, in order, and the connection goes on.
func (t *TCPServer) JobDone(j *engine.Job) {
	slot := j.Route.Conn
	conn := &t.conns[slot]
	if j.Reply != nil && !conn.aborted && conn.fd >= 0 {
		conn.pending = append(conn.pending, j.Reply...)
		t.C.TX.Add(1)
	}
	t.Loop.Pool().Release(j)
	conn.blocked = false
	t.process(slot)
}

// Cleanup implements engine.Source: every connection and the listener
// close after the ring (and every operation on them) is gone.
func (t *TCPServer) Cleanup() {
	for i := range t.conns {
		t.close(uint32(i))
	}
	CloseFd(&t.listenFd)
}

package runtime

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// The stream transport on a client loop: one TCP connection per endpoint,
// opened on its first call and kept; requests are written back to back,
// replies read into provided buffers and matched by request id, in
// whatever order they come. The stream is reliable, so nothing is
// retransmitted: a call still waits at most as long as a UDP call would
// before ErrNoReply. A connection that fails fails the calls in flight on
// it; the next call opens a new one.

const (
	tcpClientMaxConns = 4096
	tcpClientBuffers  = 256
	tcpClientBufSize  = 16 << 10
)

// tcp op kinds in user_data (| connection slot).
const (
	tcpOpConnect uint64 = 1 << 32
	tcpOpSend    uint64 = 2 << 32
	tcpOpRecv    uint64 = 3 << 32
	tcpOpMask    uint64 = 0xff << 32
)

type tcpClients struct {
	s     *clientSource
	bufs  *uring.BufferRing
	conns []*tcpClientConn // by slot; nil when free
	free  []uint32
}

type tcpClientConn struct {
	ep        *endpoint
	slot      uint32
	fd        int
	connected bool
	stream    *proto.Stream
	chunk     int // provided buffer the stream reads, -1 for none
	pending   []byte
	inflight  []byte
	// The ids of the oneway calls whose frames lie in pending and in
	// inflight: such a call is done once its bytes are written.
	onewayPending, onewayInflight []uint64
	sent                          int
	sending                       bool
	recving                       bool
	connecting                    bool
	// dropped: the connection failed but the ring still holds operations
	// on it; it keeps its slot until they have all completed, so that
	// none of them is taken for an operation of the slot's next
	// connection.
	dropped bool
}

// busy reports whether the ring holds an operation on the connection.
func (conn *tcpClientConn) busy() bool { return conn.sending || conn.recving || conn.connecting }

func (t *tcpClients) setup(s *clientSource) error {
	t.s = s
	t.conns = make([]*tcpClientConn, tcpClientMaxConns)
	for i := tcpClientMaxConns - 1; i >= 0; i-- {
		t.free = append(t.free, uint32(i))
	}
	return nil
}

// send queues call's frame on its endpoint's connection, opening it.
func (t *tcpClients) send(call *Call, now int64) {
	s := t.s
	ep := call.ep
	conn, err := t.conn(ep)
	if err != nil {
		ep.noteSocketError(err)
		s.fail(call, call.client.callErrorOn(call, err))
		return
	}
	if !call.deadline.IsZero() {
		left := time.Until(call.deadline)
		if left <= 0 {
			s.giveUp(call, errDeadline)
			return
		}
		call.frame.SetDeadline(left)
	}
	call.attempts = 1
	call.sentNs = now
	call.dueNs = now + call.rtoNs
	if call.seal != nil {
		n := len(conn.pending)
		conn.pending = slices.Grow(conn.pending, len(call.frame)+call.client.seal.overhead)
		sealed, err := call.seal.SealRequest(conn.pending[n:n], call.frame, ep.key.addr)
		if err != nil {
			s.giveUp(call, fmt.Errorf("sealing the request: %w", err))
			return
		}
		conn.pending = conn.pending[:n+len(sealed)]
	} else {
		conn.pending = append(conn.pending, call.frame...)
	}
	if call.oneway {
		conn.onewayPending = append(conn.onewayPending, call.id)
	}
	s.timers.push(call)
	t.process(conn)
}

// conn returns ep's connection, starting a connect when there is none.
func (t *tcpClients) conn(ep *endpoint) (*tcpClientConn, error) {
	if ep.tcp != nil {
		return ep.tcp, nil
	}
	if t.bufs == nil {
		bufs, err := t.s.l.Ring().NewBufferRing(t.s.l.BufferGroup(), tcpClientBuffers, tcpClientBufSize)
		if err != nil {
			return nil, fmt.Errorf("tcp receive buffers: %w", err)
		}
		t.bufs = bufs
	}
	if len(t.free) == 0 {
		return nil, errors.New("too many TCP connections on this loop")
	}
	family := unix.AF_INET6
	if ep.key.addr.Addr().Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tcp socket: %w", err)
	}
	leak.Track(fd)
	t.s.cl.tcpConns.Add(1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, sockpath.Sockaddr(ep.key.addr)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		sockpath.CloseFd(&fd)
		t.s.cl.tcpConns.Add(-1)
		return nil, fmt.Errorf("tcp connect: %w", err)
	}
	slot := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	conn := &tcpClientConn{ep: ep, slot: slot, fd: fd, chunk: -1, stream: proto.NewStream(make([]byte, proto.MaxFrameLen)), connecting: true}
	t.conns[slot] = conn
	ep.tcp = conn
	if _, err := t.s.l.Ring().PrepPollAdd(fd, unix.POLLOUT, false, t.s.tag.With(cudTCP|tcpOpConnect|uint64(slot))); err != nil {
		conn.connecting = false // nothing in the ring names it: drop frees the slot
		t.drop(conn, err)
		return nil, err
	}
	return conn, nil
}

// complete handles a completion of one of the connections' operations.
func (t *tcpClients) complete(c *uring.CQE, data uint64) {
	conn := t.conns[uint32(data&^tcpOpMask)]
	if conn == nil {
		return
	}
	if conn.dropped {
		t.retire(conn, c, data&tcpOpMask)
		return
	}
	switch data & tcpOpMask {
	case tcpOpConnect:
		conn.connecting = false
		err := c.Err()
		if err == nil {
			if soerr, gerr := unix.GetsockoptInt(conn.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr != nil {
				err = gerr
			} else if soerr != 0 {
				err = unix.Errno(soerr)
			}
		}
		if err != nil {
			t.drop(conn, fmt.Errorf("tcp connect: %w", err))
			return
		}
		conn.connected = true
	case tcpOpSend:
		conn.sending = false
		if c.Res < 0 {
			t.drop(conn, fmt.Errorf("tcp send: %w", c.Err()))
			return
		}
		conn.sent += int(c.Res)
		if conn.sent == len(conn.inflight) {
			conn.inflight, conn.sent = conn.inflight[:0], 0
			for _, id := range conn.onewayInflight {
				if call := t.s.calls[id]; call != nil && !call.finished && call.oneway {
					t.s.complete(call, nil, 0) // written to the stream: all a oneway call waits for
				}
			}
			conn.onewayInflight = conn.onewayInflight[:0]
		}
	case tcpOpRecv:
		conn.recving = false
		switch {
		case c.Res > 0:
			id, ok := c.BufferID()
			if !ok {
				t.drop(conn, errors.New("tcp receive without a buffer"))
				return
			}
			conn.chunk = int(id)
			if err := conn.stream.Feed(t.bufs.Buffer(id)[:c.Res]); err != nil {
				t.drop(conn, fmt.Errorf("tcp stream: %w", err))
				return
			}
		case c.NoBuffers():
			// Retried by the next pass once buffers come back.
		case c.Res == 0:
			t.drop(conn, errors.New("tcp: the server closed the connection"))
			return
		default:
			t.drop(conn, fmt.Errorf("tcp receive: %w", c.Err()))
			return
		}
	}
	t.process(conn)
}

// process reads the replies the stream holds, sends what is pending and
// keeps a receive armed.
func (t *tcpClients) process(conn *tcpClientConn) {
	s := t.s
	for conn.chunk >= 0 {
		f, err := conn.stream.Next()
		if f == nil && err == nil {
			t.bufs.Recycle(uint16(conn.chunk))
			conn.chunk = -1
			break
		}
		if isSealed(err) {
			s.onSealed(conn.ep, conn.stream.Raw(), conn.ep.key.addr)
			continue
		}
		if err != nil {
			conn.ep.malformed.Add(1)
			if errors.Is(err, proto.ErrMagic) || errors.Is(err, proto.ErrVersion) || errors.Is(err, proto.ErrFrameTooLarge) {
				t.drop(conn, fmt.Errorf("tcp stream: %w", err))
				return
			}
			continue
		}
		s.onReply(conn.ep, f, false)
	}
	if !conn.connected {
		return
	}
	ring := s.l.Ring()
	if !conn.sending && (len(conn.inflight) > 0 || len(conn.pending) > 0) {
		if len(conn.inflight) == 0 {
			conn.inflight, conn.pending = conn.pending, conn.inflight[:0]
			conn.onewayInflight, conn.onewayPending = conn.onewayPending, conn.onewayInflight[:0]
		}
		if _, err := ring.PrepSend(conn.fd, conn.inflight[conn.sent:], unix.MSG_NOSIGNAL, s.tag.With(cudTCP|tcpOpSend|uint64(conn.slot))); err == nil {
			conn.sending = true
		}
	}
	if !conn.recving && conn.chunk < 0 {
		if _, err := ring.PrepRecvSelect(conn.fd, t.bufs.Group(), 0, s.tag.With(cudTCP|tcpOpRecv|uint64(conn.slot))); err == nil {
			conn.recving = true
		}
	}
}

// poll re-arms receives that found no buffer.
func (t *tcpClients) poll() {
	for _, conn := range t.conns {
		if conn != nil && !conn.dropped && conn.connected && !conn.recving && conn.chunk < 0 {
			t.process(conn)
		}
	}
}

// drop closes a failed connection and fails the calls waiting on it; the
// next call to the endpoint opens a new one. While the ring still holds
// operations on it, the socket is shut down (so that they complete) and
// the connection keeps its slot, marked dropped, until retire has seen
// the last of them: a slot is reused only once nothing in the ring names
// it any more.
func (t *tcpClients) drop(conn *tcpClientConn, err error) {
	s := t.s
	ep := conn.ep
	ep.noteSocketError(err)
	if conn.chunk >= 0 {
		t.bufs.Recycle(uint16(conn.chunk))
		conn.chunk = -1
	}
	if ep.tcp == conn {
		ep.tcp = nil
	}
	conn.dropped = true
	if conn.busy() {
		_ = unix.Shutdown(conn.fd, unix.SHUT_RDWR)
	} else {
		t.freeSlot(conn)
	}
	for _, call := range s.calls {
		if call.ep == ep && !call.finished {
			s.fail(call, call.client.callErrorOn(call, err))
		}
	}
}

// retire takes a late completion of operation op on a dropped
// connection: a receive's buffer goes back to the ring, and the last
// completion frees the slot.
func (t *tcpClients) retire(conn *tcpClientConn, c *uring.CQE, op uint64) {
	switch op {
	case tcpOpConnect:
		conn.connecting = false
	case tcpOpSend:
		conn.sending = false
	case tcpOpRecv:
		conn.recving = false
		if id, ok := c.BufferID(); ok && c.Res > 0 {
			t.bufs.Recycle(id)
		}
	}
	if !conn.busy() {
		t.freeSlot(conn)
	}
}

// freeSlot closes a dropped connection that the ring no longer names and
// frees its slot.
func (t *tcpClients) freeSlot(conn *tcpClientConn) {
	sockpath.CloseFd(&conn.fd)
	t.s.cl.tcpConns.Add(-1)
	t.conns[conn.slot] = nil
	t.free = append(t.free, conn.slot)
}

// cleanup closes every connection, after the ring is gone.
func (t *tcpClients) cleanup() {
	for _, conn := range t.conns {
		if conn != nil {
			sockpath.CloseFd(&conn.fd)
			t.s.cl.tcpConns.Add(-1)
		}
	}
}

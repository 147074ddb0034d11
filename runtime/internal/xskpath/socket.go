package xskpath

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/uring"
	"github.com/zerohop/zerohop/xsk"
	"golang.org/x/sys/unix"
)

const (
	frameSize = 4096
	batch     = 64
)

// user_data kinds of a socket source.
const (
	udKick uint64 = 0 // TX kick (a CQE only on failure)
	udPoll uint64 = 1 // POLL_ADD on the socket, armed when going idle
)

// Socket is the engine.Source of one AF_XDP socket: the loop drives its
// four rings directly and uses its io_uring for TX kicks (SENDMSG), for
// sleeping on the socket (POLL_ADD) and for wakeups. A reply is built in
// the frame the request arrived in and sent from there; a blocking
// request's frame goes back to the kernel at once and its reply is built
// in a fresh frame.
type Socket struct {
	sock   *xsk.Socket
	parser netstack.Parser
	mtu    int
	queue  int

	// rxCount and txCount are this queue's share of the loop's RX and TX
	// counters (a loop may own several queues' sockets).
	rxCount, txCount atomic.Uint64

	// Its Queue is the loop's first queue; queue above is this socket's.
	engine.ServerSource

	rx        []xsk.Desc
	tx        []xsk.Desc    // replies not yet taken by the TX ring
	waiting   []*engine.Job // blocking replies waiting for a free frame
	pkt       netstack.Packet
	scratch   []byte
	kickMsg   unix.Msghdr
	pollArmed bool
	route     engine.Route
}

// socketParser is how a socket parses: the port served and whether the
// interface is one where the partial-checksum pattern can occur.
type socketParser struct {
	port          uint16
	acceptPartial bool
}

func newSocket(sock *xsk.Socket, p socketParser, mtu int) *Socket {
	return &Socket{sock: sock, mtu: mtu, queue: sock.Queue(),
		parser: netstack.Parser{Port: p.port, AcceptPartialChecksum: p.acceptPartial}}
}

// Queue is the RX queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Setup implements engine.Source: the fill ring gets every free frame,
// so the socket can receive before the port is steered to it.
func (s *Socket) Setup(l *engine.Loop, tag engine.Tag) error {
	s.Bind(l, tag)
	s.rx = make([]xsk.Desc, batch)
	s.tx = make([]xsk.Desc, 0, 4*batch)
	s.waiting = make([]*engine.Job, 0, 4*batch)
	s.scratch = make([]byte, frameSize)
	s.sock.Refill(s.sock.Free())
	if s.sock.FillNeedsWakeup() {
		_ = s.sock.WakeFill()
	}
	return nil
}

// Poll implements engine.Source: receive and answer, send what is
// queued, take back completed frames and refill.
func (s *Socket) Poll() bool {
	got := s.sock.Receive(s.rx)
	for i := 0; i < got; i++ {
		s.onFrame(s.rx[i])
	}
	waited := len(s.waiting) > 0
	s.flushTX()
	s.sock.ReapCompletions()
	if waited {
		s.sendWaiting()
		s.flushTX()
	}
	if s.sock.Refill(s.sock.Free()) > 0 && s.sock.FillNeedsWakeup() {
		_ = s.sock.WakeFill()
	}
	return got > 0 || waited
}

// Idle implements engine.Source: a level-triggered POLL_ADD wakes the
// loop when the RX ring fills; the ring is re-checked after arming so no
// frame is stranded.
func (s *Socket) Idle() (bool, time.Duration, error) {
	if !s.pollArmed {
		if _, err := s.Loop.Ring().PrepPollAdd(s.sock.FD(), unix.POLLIN, false, s.Tag.With(udPoll)); err != nil {
			return false, 0, err
		}
		s.pollArmed = true
	}
	return s.sock.RXReady() || len(s.tx) > 0 || len(s.waiting) > 0, 0, nil
}

// Complete implements engine.Source.
func (s *Socket) Complete(c *uring.CQE, data uint64) {
	switch data {
	case udPoll:
		s.pollArmed = false
		if err := c.Err(); err != nil && !errors.Is(err, unix.ECANCELED) {
			s.Warn.CQEError(s.C, engine.CQEPoll, s.queue, err)
		}
	case udKick:
		// Only failures post a CQE (CQE_SKIP_SUCCESS). EAGAIN, EBUSY,
		// ENOBUFS and ENETDOWN mean "kick again later", which the next
		// pass does; anything else is counted and logged.
		if err := c.Err(); err != nil && !tryLater(err) {
			s.Warn.CQEError(s.C, engine.CQEKick, s.queue, err)
		}
	}
}

func tryLater(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOBUFS) ||
		errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ECANCELED)
}

// flushTX moves pending replies to the TX ring and kicks the kernel when
// it asks for it, through a SENDMSG on the socket submitted with the next
// io_uring_enter.
func (s *Socket) flushTX() {
	if len(s.tx) > 0 {
		k := s.sock.Transmit(s.tx)
		s.C.TX.Add(uint64(k))
		s.txCount.Add(uint64(k))
		s.tx = s.tx[:copy(s.tx, s.tx[k:])]
	}
	if s.sock.TXPending() > 0 && s.sock.TXNeedsWakeup() {
		sqe, err := s.Loop.Ring().PrepSendmsg(s.sock.FD(), &s.kickMsg, 0, s.Tag.With(udKick))
		if err != nil {
			return // the ring is full; the next pass kicks
		}
		sqe.Flags |= uring.SQECQESkipSuccess
		s.C.Kicks.Add(1)
	}
}

func (s *Socket) onFrame(d xsk.Desc) {
	s.C.RX.Add(1)
	s.rxCount.Add(1)
	frame := s.sock.Frame(d.Addr)
	if int(d.Len) > len(frame) {
		s.Warn.Drop(s.C, engine.PathXSK, engine.DropPacket, s.queue)
		s.sock.Release(d.Addr)
		return
	}
	if err := s.parser.Parse(frame[:d.Len], &s.pkt); err != nil || s.pkt.Class != netstack.ClassUDP {
		s.Warn.Drop(s.C, engine.PathXSK, engine.DropForPacket(err), s.queue)
		s.sock.Release(d.Addr)
		return
	}
	if s.pkt.PartialChecksum {
		s.C.PartialChecksum.Add(1)
	}
	peer := s.peer()
	payload := s.pkt.Payload
	room := s.pkt.PayloadRoom()
	limit := s.replyLimit()
	// Build the reply behind the request in the same frame when it fits,
	// else in scratch; either way it then moves to the payload's start.
	off := (len(payload) + 63) &^ 63
	var out []byte
	if len(room)-off >= limit {
		out = room[off : off+limit : off+limit]
	} else {
		out = s.scratch[:limit:limit]
	}
	r, reply := s.Disp.Dispatch(payload, peer, engine.PathXSK, out, s)
	if r != engine.Ready {
		// Nothing to send, or a worker has the request (copied): either
		// way the frame goes back now.
		s.sock.Release(d.Addr)
		return
	}
	n := copy(room, reply)
	s.queueReply(d.Addr, n)
}

func (s *Socket) peer() netip.AddrPort {
	if s.pkt.IPv4 != nil {
		return netip.AddrPortFrom(s.pkt.IPv4.SourceAddress(), s.pkt.UDP.SourcePort())
	}
	return netip.AddrPortFrom(s.pkt.IPv6.SourceAddress(), s.pkt.UDP.SourcePort())
}

func (s *Socket) local() netip.AddrPort {
	if s.pkt.IPv4 != nil {
		return netip.AddrPortFrom(s.pkt.IPv4.DestinationAddress(), s.pkt.UDP.DestinationPort())
	}
	return netip.AddrPortFrom(s.pkt.IPv6.DestinationAddress(), s.pkt.UDP.DestinationPort())
}

// replyLimit is the largest GWIR reply that fits both the interface's MTU
// (with the request's IP header) and the request's frame.
func (s *Socket) replyLimit() int {
	ipHeader := 40
	if s.pkt.IPv4 != nil {
		ipHeader = s.pkt.IPv4.HeaderLength()
	}
	limit := min(s.mtu-ipHeader-8, proto.MaxFrameLen)
	// The reply is moved to the request payload's place in the frame, so it
	// cannot be longer than the frame holds from there (about 3.8 KiB in
	// copy mode), whatever the MTU.
	return min(limit, len(s.pkt.PayloadRoom()), len(s.scratch))
}

// queueReply turns the parsed request frame at addr, whose payload room
// now starts with an n-byte GWIR reply, into the reply packet and queues
// it.
func (s *Socket) queueReply(addr uint64, n int) {
	reply, err := netstack.Reply(&s.pkt, n)
	if err != nil {
		s.Warn.Drop(s.C, engine.PathXSK, engine.DropPacket, s.queue)
		s.sock.Release(addr)
		return
	}
	s.tx = append(s.tx, xsk.Desc{Addr: addr, Len: uint32(len(reply))})
}

// Submit implements engine.Submitter: the job keeps the reply's header
// fields, so the request's frame is released at once.
func (s *Socket) Submit(m *engine.Method, req *engine.Request) bool {
	f := &s.route.Reply
	*f = netstack.UDPFields{SrcMAC: s.pkt.Ethernet.Destination(), DstMAC: s.pkt.Ethernet.Source(),
		Src: s.local(), Dst: s.peer()}
	if s.pkt.VLAN != nil {
		f.Tagged, f.VLANTCI = true, s.pkt.VLAN.TCI()
	}
	if s.pkt.IPv4 != nil {
		f.TOS = s.pkt.IPv4.TOS()
	} else {
		f.TOS, f.FlowLabel = s.pkt.IPv6.TrafficClass(), s.pkt.IPv6.FlowLabel()
	}
	return s.Loop.Submit(m, req, s.replyLimit(), s.Tag.Source(), &s.route)
}

// JobDone implements engine.Source: the reply of a blocking request goes
// out in a fresh frame. When none is free (a burst of replies as a
// blocked pool drains), the job waits for one instead of losing its
// reply: frames come back with the next TX completions. It stays counted
// in the pool meanwhile, so the pool answers OVERLOADED rather than let
// replies pile up without bound, and Shutdown's drain waits for it.
func (s *Socket) JobDone(j *engine.Job) {
	if j.Reply == nil {
		s.Loop.Pool().Release(j)
		return
	}
	if len(s.waiting) > 0 || !s.sendJob(j) {
		s.waiting = append(s.waiting, j)
	}
}

// sendJob builds j's reply in a free frame and queues it; false when no
// frame is free.
func (s *Socket) sendJob(j *engine.Job) bool {
	addr, ok := s.sock.Alloc()
	if !ok {
		return false
	}
	defer s.Loop.Pool().Release(j)
	pkt, err := netstack.BuildUDP(s.sock.Frame(addr), &j.Route.Reply, j.Reply)
	if err != nil {
		s.Warn.Drop(s.C, engine.PathXSK, engine.DropPacket, s.queue)
		s.sock.Release(addr)
		return true
	}
	s.tx = append(s.tx, xsk.Desc{Addr: addr, Len: uint32(len(pkt))})
	return true
}

// sendWaiting sends the replies that waited for a frame, in order, before
// the fill ring takes the free frames back.
func (s *Socket) sendWaiting() {
	n := 0
	for n < len(s.waiting) && s.sendJob(s.waiting[n]) {
		s.waiting[n] = nil
		n++
	}
	if n > 0 {
		s.waiting = s.waiting[:copy(s.waiting, s.waiting[n:])]
	}
}

// Cleanup implements engine.Source: replies not yet in the TX ring or
// still waiting for a frame are lost (the loop stops after Shutdown's
// drain, which waits for the latter, gave up) and counted; frames still held go with the UMEM, which the
// attachment closes after the loops have stopped.
func (s *Socket) Cleanup() {
	// Replies the TX ring never took are lost with the stop; they count
	// as tx_full (no transmit slot was had in time).
	for range s.tx {
		s.Warn.Drop(s.C, engine.PathXSK, engine.DropTxFull, s.queue)
	}
	s.tx = s.tx[:0]
	for _, j := range s.waiting {
		s.Warn.Drop(s.C, engine.PathXSK, engine.DropNoFrame, s.queue)
		s.Loop.Pool().Release(j)
	}
	s.waiting = nil
}

package sockpath

import (
	"fmt"
	"net/netip"

	"github.com/zerohop/zerohop/uring"
	"golang.org/x/sys/unix"
)

// nameRoom is the room for the source address of a received datagram.
const nameRoom = unix.SizeofSockaddrInet6

// recvmsgOutSize is struct io_uring_recvmsg_out, which the kernel writes
// in front of each received datagram.
const recvmsgOutSize = 16

// Receiver receives datagrams on one UDP socket with a multishot RECVMSG
// into a provided-buffer ring: the one receive path of servers and
// clients. Not safe for concurrent use: it belongs to one loop.
type Receiver struct {
	fd    int
	ud    uint64
	bufs  *uring.BufferRing
	msg   unix.Msghdr
	armed bool
}

// Datagram is one received datagram, valid until Done.
type Datagram struct {
	Payload []byte
	Peer    netip.AddrPort
	// Truncated: the datagram was larger than the buffer; Payload holds
	// its head.
	Truncated bool
	id        uint16
}

// Setup makes the buffer ring (count buffers of maxDatagram bytes, in
// group) and arms the receive on fd with user_data ud.
func (r *Receiver) Setup(ring *uring.Ring, fd int, group uint16, count, maxDatagram int, ud uint64) error {
	bufs, err := ring.NewBufferRing(group, count, maxDatagram+recvmsgOutSize+nameRoom)
	if err != nil {
		return fmt.Errorf("runtime: receive buffers: %w", err)
	}
	r.fd, r.ud, r.bufs = fd, ud, bufs
	r.msg.Namelen = nameRoom
	return r.Arm(ring)
}

// Arm (re)arms the multishot receive if it is not armed.
func (r *Receiver) Arm(ring *uring.Ring) error {
	if r.armed {
		return nil
	}
	if _, err := ring.PrepRecvmsgMultishot(r.fd, &r.msg, r.bufs.Group(), 0, r.ud); err != nil {
		return fmt.Errorf("runtime: arming a receive: %w", err)
	}
	r.armed = true
	return nil
}

// Armed reports whether the multishot receive is armed.
func (r *Receiver) Armed() bool { return r.armed }

// Complete reads the receive's completion c: a datagram (ok), or an error
// of the receive (nil with !ok when the completion carried nothing). The
// receive must be re-armed with Arm when Armed turns false.
func (r *Receiver) Complete(c *uring.CQE) (d Datagram, ok bool, err error) {
	if !c.More() {
		r.armed = false
	}
	if c.Res < 0 {
		return d, false, c.Err()
	}
	id, has := c.BufferID()
	if !has {
		return d, false, nil
	}
	out, perr := uring.ParseRecvmsgOut(r.bufs.Buffer(id)[:c.Res], nameRoom, 0)
	if perr != nil {
		r.bufs.Put(id)
		return d, false, perr
	}
	d.id = id
	d.Payload, d.Truncated = out.Payload, out.Truncated()
	d.Peer, _ = uring.SockaddrAddrPort(out.Name)
	return d, true, nil
}

// Done gives d's buffer back (published with the next Publish).
func (r *Receiver) Done(d *Datagram) { r.bufs.Put(d.id) }

// Publish hands the buffers given back since the last call to the kernel.
func (r *Receiver) Publish() {
	if r.bufs != nil {
		r.bufs.Publish()
	}
}

// Sender sends datagrams with SENDMSG from a fixed set of slots, each
// owning its msghdr, iovec and address while the kernel reads them.
type Sender struct {
	slots []sendSlot
	free  []uint32
}

type sendSlot struct {
	buf  []byte
	name [unix.SizeofSockaddrInet6]byte
	iov  unix.Iovec
	msg  unix.Msghdr
}

// Init makes n slots, each with a buffer of bufSize bytes (0: the caller
// sends from its own memory, which must then stay put until the slot's
// completion).
func (s *Sender) Init(n, bufSize int) {
	s.slots = make([]sendSlot, n)
	s.free = make([]uint32, 0, n)
	for i := n - 1; i >= 0; i-- {
		if bufSize > 0 {
			s.slots[i].buf = make([]byte, bufSize)
		}
		s.free = append(s.free, uint32(i))
	}
}

// Get takes a free slot.
func (s *Sender) Get() (uint32, bool) {
	n := len(s.free)
	if n == 0 {
		return 0, false
	}
	slot := s.free[n-1]
	s.free = s.free[:n-1]
	return slot, true
}

// Buf is slot's own buffer.
func (s *Sender) Buf(slot uint32) []byte { return s.slots[slot].buf }

// Put frees slot, once its completion came (or its SENDMSG was never
// prepared).
func (s *Sender) Put(slot uint32) { s.free = append(s.free, slot) }

// Send prepares a SENDMSG of frame to peer on fd from slot, with
// user_data ud. frame must stay put until the completion.
func (s *Sender) Send(ring *uring.Ring, fd int, slot uint32, frame []byte, peer netip.AddrPort, ud uint64) error {
	sl := &s.slots[slot]
	nameLen := uring.PutSockaddr(sl.name[:], peer)
	sl.iov.Base = &frame[0]
	sl.iov.SetLen(len(frame))
	sl.msg = unix.Msghdr{Name: &sl.name[0], Namelen: uint32(nameLen), Iov: &sl.iov, Iovlen: 1}
	_, err := ring.PrepSendmsg(fd, &sl.msg, 0, ud)
	return err
}

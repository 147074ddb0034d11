package sockpath

import (
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/uring"
)

// Sizes of a server's UDP path.
const (
	// MaxDatagram bounds requests and replies on kernel sockets. A larger
	// request is answered TOO_LARGE (its header is intact).
	MaxDatagram    = 8192
	udpRecvBuffers = 512
	udpSendSlots   = 512
)

// user_data kinds of the UDP server source.
const (
	udpRecv uint64 = 0
	udpSend uint64 = 1 << 40 // | slot
)

// UDPServer serves requests arriving on one kernel UDP socket, on the
// loop it is added to: a multishot RECVMSG into a provided-buffer ring,
// one SENDMSG per reply. The socket is the source's from New until
// Cleanup, which closes it.
type UDPServer struct {
	fd   int
	path engine.Path
	engine.ServerSource
	recv Receiver
	send Sender
	jobs []*engine.Job // the job whose reply a send slot carries
}

// NewUDPServer makes the source for fd (a socket from OpenUDP).
func NewUDPServer(fd int) *UDPServer { return &UDPServer{fd: fd, path: engine.PathUDP} }

// Fd is the source's socket.
func (u *UDPServer) Fd() int { return u.fd }

// Setup implements engine.Source.
func (u *UDPServer) Setup(l *engine.Loop, tag engine.Tag) error {
	u.Bind(l, tag)
	u.send.Init(udpSendSlots, MaxDatagram)
	u.jobs = make([]*engine.Job, udpSendSlots)
	return u.recv.Setup(l.Ring(), u.fd, l.BufferGroup(), udpRecvBuffers, MaxDatagram, tag.With(udpRecv))
}

// Complete implements engine.Source.
func (u *UDPServer) Complete(c *uring.CQE, data uint64) {
	if data&udpSend != 0 {
		u.sent(uint32(data&^udpSend), c)
		return
	}
	d, ok, err := u.recv.Complete(c)
	if err != nil {
		if c.NoBuffers() {
			u.C.Rearms.Add(1)
		} else {
			u.Warn.CQEError(u.C, engine.CQERecv, u.Queue, err)
		}
		return
	}
	if ok {
		u.onDatagram(&d)
		u.recv.Done(&d)
	}
}

func (u *UDPServer) onDatagram(d *Datagram) {
	u.C.RX.Add(1)
	if !d.Peer.IsValid() {
		u.Warn.Drop(u.C, engine.PathUDP, engine.DropPacket, u.Queue)
		return
	}
	slot, ok := u.send.Get()
	if !ok {
		u.Warn.Drop(u.C, engine.PathUDP, engine.DropTxFull, u.Queue)
		return
	}
	buf := u.send.Buf(slot)
	var r engine.Outcome
	var reply []byte
	if d.Truncated {
		r, reply = u.Disp.TooLarge(d.Payload, engine.PathUDP, buf)
	} else {
		r, reply = u.Disp.Dispatch(d.Payload, d.Peer, u.path, buf, u)
	}
	if r != engine.Ready {
		u.send.Put(slot)
		return
	}
	u.sendFrom(slot, reply, d.Peer, nil)
}

func (u *UDPServer) sendFrom(slot uint32, frame []byte, peer netip.AddrPort, j *engine.Job) {
	if err := u.send.Send(u.Loop.Ring(), u.fd, slot, frame, peer, u.Tag.With(udpSend|uint64(slot))); err != nil {
		u.Warn.Drop(u.C, engine.PathUDP, engine.DropTxFull, u.Queue)
		u.send.Put(slot)
		if j != nil {
			u.Loop.Pool().Release(j)
		}
		return
	}
	u.jobs[slot] = j
}

func (u *UDPServer) sent(slot uint32, c *uring.CQE) {
	if err := c.Err(); err != nil {
		u.Warn.Drop(u.C, engine.PathUDP, engine.DropSendFailed, u.Queue)
	} else {
		u.C.TX.Add(1)
	}
	if j := u.jobs[slot]; j != nil {
		u.jobs[slot] = nil
		u.Loop.Pool().Release(j)
	}
	u.send.Put(slot)
}

// Submit implements engine.Submitter: the reply comes back to this
// source's JobDone.
func (u *UDPServer) Submit(m *engine.Method, req *engine.Request) bool {
	return u.Loop.Submit(m, req, MaxDatagram, u.Tag.Source(), nil)
}

// JobDone implements engine.Source.
func (u *UDPServer) JobDone(j *engine.Job) {
	if j.Reply == nil {
		u.Loop.Pool().Release(j)
		return
	}
	slot, ok := u.send.Get()
	if !ok {
		u.Warn.Drop(u.C, engine.PathUDP, engine.DropTxFull, u.Queue)
		u.Loop.Pool().Release(j)
		return
	}
	u.sendFrom(slot, j.Reply, j.Peer, j)
}

// Poll implements engine.Source: buffers given back go to the kernel and
// a receive that ended is re-armed.
func (u *UDPServer) Poll() bool {
	u.recv.Publish()
	if !u.recv.Armed() && !u.Loop.Stopping() {
		if err := u.recv.Arm(u.Loop.Ring()); err != nil {
			u.Warn.CQEError(u.C, engine.CQERecv, u.Queue, err)
		}
	}
	return false
}

// Idle implements engine.Source: the armed receive wakes the loop.
func (u *UDPServer) Idle() (bool, time.Duration, error) { return false, 0, nil }

// Cleanup implements engine.Source: jobs whose replies were being sent
// go back to the pool (the ring's close cancelled those sends), then the
// socket closes.
func (u *UDPServer) Cleanup() {
	for i, j := range u.jobs {
		if j != nil {
			u.jobs[i] = nil
			u.Loop.Pool().Release(j)
		}
	}
	CloseFd(&u.fd)
}

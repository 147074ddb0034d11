package uring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func addrOf[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p))) }

func bufAddr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

func (r *Ring) timespecAddr(slot uint32) uint64 { return addrOf(&r.timespecs[slot]) }

// keepAlive records p for the slot of the SQE prepared last.
func (r *Ring) keepAlive(p any) { r.keep[r.lastSlot()] = p }

func (r *Ring) keepBuf(b []byte) {
	if len(b) > 0 {
		r.keepAlive(&b[0])
	}
}

// PrepRead reads into buf from fd at offset (^uint64(0): the file
// position); Res is the byte count.
func (r *Ring) PrepRead(fd int, buf []byte, offset uint64, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpRead, fd, bufAddr(buf), uint32(len(buf)), offset, userData)
	if err == nil {
		r.keepBuf(buf)
	}
	return sqe, err
}

// PrepWrite writes buf to fd at offset (^uint64(0): the file position).
func (r *Ring) PrepWrite(fd int, buf []byte, offset uint64, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpWrite, fd, bufAddr(buf), uint32(len(buf)), offset, userData)
	if err == nil {
		r.keepBuf(buf)
	}
	return sqe, err
}

// PrepRecv receives from a socket into buf.
func (r *Ring) PrepRecv(fd int, buf []byte, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpRecv, fd, bufAddr(buf), uint32(len(buf)), 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = msgFlags
	r.keepBuf(buf)
	return sqe, nil
}

// PrepSend sends buf on a socket.
func (r *Ring) PrepSend(fd int, buf []byte, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpSend, fd, bufAddr(buf), uint32(len(buf)), 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = msgFlags
	r.keepBuf(buf)
	return sqe, nil
}

// PrepSendZC sends buf without copying it (Linux 6.0). It posts two CQEs:
// the result (with CQEFMore) and later a notification (Notif) after which
// buf may be reused. zcFlags may hold SendZCReportUsage.
func (r *Ring) PrepSendZC(fd int, buf []byte, msgFlags uint32, zcFlags uint16, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpSendZC, fd, bufAddr(buf), uint32(len(buf)), 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = msgFlags
	sqe.Ioprio = zcFlags
	r.keepBuf(buf)
	return sqe, nil
}

// PrepSendmsg sends the message msg describes. An empty msghdr on an AF_XDP
// socket is the TX kick; give it SQECQESkipSuccess so it does not end a
// wait.
func (r *Ring) PrepSendmsg(fd int, msg *unix.Msghdr, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpSendmsg, fd, addrOf(msg), 1, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = msgFlags
	r.keepAlive(msg)
	return sqe, nil
}

// PrepRecvmsg receives one message as recvmsg(2) would, into msg's iovecs.
func (r *Ring) PrepRecvmsg(fd int, msg *unix.Msghdr, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpRecvmsg, fd, addrOf(msg), 1, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = msgFlags
	r.keepAlive(msg)
	return sqe, nil
}

// PrepRecvmsgMultishot receives datagrams into buffers of the
// provided-buffer group, one CQE per datagram (Linux 6.0). Only msg's
// Namelen and Controllen matter (no iovecs): they reserve room for the
// source address and control data in each buffer, which ParseRecvmsgOut
// decodes. Ends like PrepRecvMultishot.
func (r *Ring) PrepRecvmsgMultishot(fd int, msg *unix.Msghdr, group uint16, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.PrepRecvmsg(fd, msg, msgFlags, userData)
	if err != nil {
		return nil, err
	}
	sqe.Flags = SQEBufferSelect
	sqe.BufIndex = group
	sqe.Ioprio |= recvMultishot
	return sqe, nil
}

// PrepConnect connects a socket to the address in sockaddr (raw
// struct sockaddr bytes, see PutSockaddr).
func (r *Ring) PrepConnect(fd int, sockaddr []byte, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpConnect, fd, bufAddr(sockaddr), 0, uint64(len(sockaddr)), userData)
	if err == nil {
		r.keepBuf(sockaddr)
	}
	return sqe, err
}

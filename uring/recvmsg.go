package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// recvmsgOutSize is sizeof(struct io_uring_recvmsg_out): namelen,
// controllen, payloadlen, flags, all u32.
const recvmsgOutSize = 16

// RecvmsgOut is one datagram delivered by a multishot RECVMSG into a
// provided buffer. Its slices point into that buffer and stay valid until
// the buffer is recycled.
type RecvmsgOut struct {
	// Name is the source address (struct sockaddr bytes, see
	// SockaddrAddrPort), cut to the room reserved by the msghdr's Namelen.
	Name []byte
	// Control is the ancillary data, cut to the reserved Controllen.
	Control []byte
	// Payload is the datagram, cut to what fitted in the buffer.
	Payload []byte
	// NameLen, ControlLen and PayloadLen are the full lengths the kernel
	// had; larger than the slices when something was truncated.
	NameLen, ControlLen, PayloadLen uint32
	// Flags are the recvmsg flags (unix.MSG_TRUNC, unix.MSG_CTRUNC).
	Flags uint32
}

// Truncated reports whether the payload did not fit the buffer.
func (o *RecvmsgOut) Truncated() bool { return o.Flags&unix.MSG_TRUNC != 0 }

// ErrShortRecvmsgBuffer means a buffer is too small to hold the
// io_uring_recvmsg_out header and the reserved name and control room.
var ErrShortRecvmsgBuffer = errors.New("io_uring: recvmsg buffer shorter than its header")

// ParseRecvmsgOut decodes the buffer a multishot RECVMSG CQE delivered:
// buf is the buffer cut to the CQE's Res; nameRoom and controlRoom are the
// Namelen and Controllen of the msghdr the request was prepared with. It
// does not allocate.
func ParseRecvmsgOut(buf []byte, nameRoom, controlRoom int) (RecvmsgOut, error) {
	header := recvmsgOutSize + nameRoom + controlRoom
	if nameRoom < 0 || controlRoom < 0 || len(buf) < header {
		return RecvmsgOut{}, fmt.Errorf("%w: %d bytes, need %d", ErrShortRecvmsgBuffer, len(buf), header)
	}
	var o RecvmsgOut
	o.NameLen = binary.NativeEndian.Uint32(buf[0:])
	o.ControlLen = binary.NativeEndian.Uint32(buf[4:])
	o.PayloadLen = binary.NativeEndian.Uint32(buf[8:])
	o.Flags = binary.NativeEndian.Uint32(buf[12:])
	nameEnd := recvmsgOutSize + min(int(o.NameLen), nameRoom)
	o.Name = buf[recvmsgOutSize:nameEnd:nameEnd]
	controlStart := recvmsgOutSize + nameRoom
	controlEnd := controlStart + min(int(o.ControlLen), controlRoom)
	o.Control = buf[controlStart:controlEnd:controlEnd]
	payloadEnd := header + min(int(o.PayloadLen), len(buf)-header)
	o.Payload = buf[header:payloadEnd:payloadEnd]
	return o, nil
}

// SockaddrAddrPort decodes a struct sockaddr_in or sockaddr_in6 (as found
// in RecvmsgOut.Name) without allocating.
func SockaddrAddrPort(sa []byte) (netip.AddrPort, bool) {
	if len(sa) < 2 {
		return netip.AddrPort{}, false
	}
	switch binary.NativeEndian.Uint16(sa) {
	case unix.AF_INET:
		if len(sa) < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:])), true
	case unix.AF_INET6:
		if len(sa) < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])), binary.BigEndian.Uint16(sa[2:])), true
	}
	return netip.AddrPort{}, false
}

// PutSockaddr writes ap as a struct sockaddr_in (IPv4) or sockaddr_in6 into
// dst and returns its length, or 0 when dst is too short. The result is
// what PrepConnect and a msghdr's Name take.
func PutSockaddr(dst []byte, ap netip.AddrPort) int {
	addr := ap.Addr()
	if addr.Is4() {
		if len(dst) < unix.SizeofSockaddrInet4 {
			return 0
		}
		clear(dst[:unix.SizeofSockaddrInet4])
		binary.NativeEndian.PutUint16(dst, unix.AF_INET)
		binary.BigEndian.PutUint16(dst[2:], ap.Port())
		a4 := addr.As4()
		copy(dst[4:8], a4[:])
		return unix.SizeofSockaddrInet4
	}
	if len(dst) < unix.SizeofSockaddrInet6 {
		return 0
	}
	clear(dst[:unix.SizeofSockaddrInet6])
	binary.NativeEndian.PutUint16(dst, unix.AF_INET6)
	binary.BigEndian.PutUint16(dst[2:], ap.Port())
	a16 := addr.As16()
	copy(dst[8:24], a16[:])
	return unix.SizeofSockaddrInet6
}

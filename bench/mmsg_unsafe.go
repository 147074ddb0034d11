package bench

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// mmsgBatch is a preallocated vector of messages, each with one iovec, for
// sendmmsg/recvmmsg on a connected socket.
type mmsgBatch struct {
	msgs []mmsghdr
	iovs []unix.Iovec
}

func newMmsgBatch(n int) *mmsgBatch {
	b := &mmsgBatch{msgs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n)}
	for i := range b.msgs {
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.Iovlen = 1
	}
	return b
}

// set points message i at buf.
func (b *mmsgBatch) set(i int, buf []byte) {
	b.iovs[i].Base = &buf[0]
	b.iovs[i].SetLen(len(buf))
}

// sendmmsg sends the first n messages without blocking and returns how many
// the kernel took.
func (b *mmsgBatch) sendmmsg(fd, n int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(n),
		unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// recvmmsg receives up to len(msgs) messages without blocking; message i's
// length is then b.msgs[i].len.
func (b *mmsgBatch) recvmmsg(fd int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])),
		uintptr(len(b.msgs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// unsafeIovBytes returns the bytes message i of a received batch holds.
func unsafeIovBytes(b *mmsgBatch, i int) []byte {
	return unsafe.Slice(b.iovs[i].Base, int(b.msgs[i].len))
}

package runtime

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendto sends p to the socket address name (struct sockaddr bytes) on
// fd without blocking and without allocating (unix.Sendto converts a
// Sockaddr interface on every call).
func sendto(fd int, p, name []byte) error {
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&name[0])), uintptr(len(name)))
	if errno != 0 {
		return errno
	}
	return nil
}

// recvFrom reads one datagram into p (flags: MSG_DONTWAIT or 0) without
// allocating: the peer's address is not asked for.
func recvFrom(fd int, p []byte, flags int) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		uintptr(flags|unix.MSG_TRUNC), 0, 0)
	return int(n), errno
}

// sendTo writes p on the connected socket fd without blocking.
func sendTo(fd int, p []byte) unix.Errno {
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_DONTWAIT, 0, 0)
	return errno
}

// connectTo connects fd to the socket address name (struct sockaddr
// bytes) without allocating.
func connectTo(fd int, name []byte) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&name[0])), uintptr(len(name)))
	return errno
}

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

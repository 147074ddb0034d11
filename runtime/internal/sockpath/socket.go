package sockpath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

// ErrAddrInUse: another server holds the address. Wrapped with the
// address and what holds it.
var ErrAddrInUse = errors.New("address in use")

// socketBuf is the receive buffer of the server's UDP sockets, deep enough
// to absorb bursts while a loop is preempted (FORCE needs CAP_NET_ADMIN;
// the plain option is capped by net.core.rmem_max).
const socketBuf = 4 << 20

// OpenReusePort opens a non-blocking SO_REUSEPORT socket of type sotype
// (SOCK_DGRAM, SOCK_STREAM) bound to addr — dual-stack for a wildcard IPv6
// address — after setup has set its options, and returns it with the
// address it got (the kernel's port when addr's is 0).
func OpenReusePort(addr netip.AddrPort, sotype int, setup func(fd int) error) (int, netip.AddrPort, error) {
	return open(addr, sotype, true, setup)
}

func open(addr netip.AddrPort, sotype int, reusePort bool, setup func(fd int) error) (int, netip.AddrPort, error) {
	family := unix.AF_INET6
	if addr.Addr().Is4() {
		family = unix.AF_INET
	}
	network := "udp"
	if sotype == unix.SOCK_STREAM {
		network = "tcp"
	}
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, addr, fmt.Errorf("runtime: %s socket: %w", network, err)
	}
	leak.Track(fd)
	fail := func(op string, err error) (int, netip.AddrPort, error) {
		closeFd(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			err = fmt.Errorf("%w (%w)", ErrAddrInUse, err)
		}
		return -1, addr, fmt.Errorf("runtime: %s %s %s: %w", network, op, addr, err)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("SO_REUSEPORT", err)
		}
	}
	if family == unix.AF_INET6 && addr.Addr().IsUnspecified() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if setup != nil {
		if err := setup(fd); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, Sockaddr(addr)); err != nil {
		return fail("bind", err)
	}
	bound, err := LocalAddr(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, netip.AddrPortFrom(addr.Addr(), bound.Port()), nil
}

// OpenUDP opens one of a server's UDP sockets.
func OpenUDP(addr netip.AddrPort) (int, netip.AddrPort, error) {
	return OpenReusePort(addr, unix.SOCK_DGRAM, func(fd int) error {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuf)
		}
		return nil
	})
}

// tcpBacklog is the accept queue of a server's TCP listeners.
const tcpBacklog = 1024

// OpenTCPListener opens and listens on one of a server's TCP sockets.
func OpenTCPListener(addr netip.AddrPort) (int, error) {
	fd, _, err := OpenReusePort(addr, unix.SOCK_STREAM, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return -1, err
	}
	if err := unix.Listen(fd, tcpBacklog); err != nil {
		closeFd(fd)
		return -1, fmt.Errorf("runtime: tcp listen %s: %w", addr, err)
	}
	return fd, nil
}

// Sockaddr converts ap for the socket calls.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// AddrPortOf converts a socket address (IPv4-mapped IPv6 unmapped).
func AddrPortOf(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

// LocalAddr is the address fd is bound to.
func LocalAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap, ok := AddrPortOf(sa)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("unexpected socket address %T", sa)
	}
	return ap, nil
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
		leak.Untrack(fd)
	}
}

// CloseFd closes fd (if ≥ 0) and sets it to -1.
func CloseFd(fd *int) {
	closeFd(*fd)
	*fd = -1
}

package sockpath

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Guard is a server's claim on its address among the zerohop servers of a
// network namespace. A server's own loops share a port through
// SO_REUSEPORT, which would just as gladly let a second server of the same
// user join and take half the traffic; the guard is what says no.
//
// It is an abstract unix socket named after the address: binding one is
// atomic and exclusive within a network namespace (the same scope as the
// port), needs no file system (so servers in different mount namespaces
// see the same name), and the kernel releases it when the process dies,
// even by SIGKILL.
//
// A server that does not share (the default) takes the exclusive name and
// checks that nothing else is bound to the port: a bind of a plain socket
// (without SO_REUSEPORT) fails if any socket holds it, zerohop or not. A
// server that opts in to sharing (WithReusePort) checks only that no
// non-sharing server holds the exclusive name. The two checks leave a
// window of a few microseconds between two servers starting at once; the
// exclusive name itself has none.
type Guard struct {
	fd int
}

// ClaimAddr claims addr for a server. With share it only checks that no
// exclusive claim is held. probe lists the socket types (SOCK_DGRAM,
// SOCK_STREAM) the server will bind, whose ports must be free; leave it
// empty when the server's own socket already holds the port (a port the
// kernel picked, which was free).
func ClaimAddr(addr netip.AddrPort, share bool, probe ...int) (*Guard, error) {
	name := "\x00zerohop/" + addr.String()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("runtime: claiming %s: %w", addr, err)
	}
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: name})
	switch {
	case err == nil && share:
		unix.Close(fd) // nobody holds the exclusive claim: fine to share
		return &Guard{fd: -1}, nil
	case errors.Is(err, unix.EADDRINUSE):
		unix.Close(fd)
		return nil, fmt.Errorf("runtime: %s: %w: another zerohop server in this network namespace serves it without WithReusePort", addr, ErrAddrInUse)
	case err != nil:
		unix.Close(fd)
		return nil, fmt.Errorf("runtime: claiming %s: %w", addr, err)
	}
	for _, sotype := range probe {
		probe, _, perr := open(addr, sotype, false, nil)
		if perr != nil {
			unix.Close(fd)
			if errors.Is(perr, ErrAddrInUse) {
				network := "udp"
				if sotype == unix.SOCK_STREAM {
					network = "tcp"
				}
				return nil, fmt.Errorf("runtime: %s %s: %w: another socket is bound to it (if it is a zerohop server, give WithReusePort to both to share the address)", network, addr, ErrAddrInUse)
			}
			return nil, perr
		}
		closeFd(probe)
	}
	return &Guard{fd: fd}, nil
}

// Release gives the claim up.
func (g *Guard) Release() {
	if g != nil && g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}

package xsk

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// HaveAFXDP probes whether an AF_XDP socket can be created here. Only nil
// and an error wrapping ErrNotSupported (kernel without AF_XDP, since 4.18)
// are conclusive; others (EPERM without CAP_NET_RAW) say the probe could
// not tell. The result is computed once and cached.
func HaveAFXDP() error { return haveAFXDP() }

var haveAFXDP = sync.OnceValue(func() error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("xsk: probe AF_XDP (needs Linux 4.18 with CONFIG_XDP_SOCKETS): %w: %w", ErrNotSupported, err)
	}
	return fmt.Errorf("xsk: probe AF_XDP: socket: %w%s", err, hintPerm(err))
})

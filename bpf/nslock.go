package bpf

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
)

// Servers that share an interface are always in one network namespace:
// the interface lives in exactly one, and both rtnetlink and AF_XDP bind
// only see the interfaces of their own. Abstract unix socket names are
// scoped to the network namespace, not the mount namespace, and the kernel
// releases a name when its socket closes, however its process ends. A name
// bound to a socket is therefore a lock that every server of the interface
// sees, whichever `ip netns exec` (and /sys) started it, and that a server
// killed with SIGKILL drops at once. The names include the program's id,
// unique on the host while the program lives:
//
//	@zerohop/xdp/<prog id>/slot/<n>   held by the server in slot n for its life
//	@zerohop/xdp/<prog id>/registry   held while a server edits the services
//
// Whether a lock is held is probed with an empty datagram sent to its name
// from an unbound socket: ECONNREFUSED means nobody holds it; the holder
// shut its socket down for reading, so the probe gets EPIPE and nothing
// queues up.

// netns is the network namespace a Program was created in, so that sockets
// for its locks are made there even when a method runs on a thread of
// another namespace (tests move threads between namespaces).
type netns struct {
	fd  int
	ino uint64
}

func currentNetns() (*netns, error) {
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat of the network namespace: %w", err)
	}
	leak.Track(fd)
	return &netns{fd: fd, ino: st.Ino}, nil
}

func (n *netns) close() {
	if n != nil && n.fd >= 0 {
		leak.Untrack(n.fd)
		unix.Close(n.fd)
		n.fd = -1
	}
}

// do runs fn in the namespace: directly when the calling thread is in it,
// otherwise on a locked thread that enters it and returns afterwards (a
// thread that cannot return stays locked and dies with its goroutine).
func (n *netns) do(fn func() error) error {
	runtime.LockOSThread()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err == nil && st.Ino == n.ino {
		defer runtime.UnlockOSThread()
		return fn()
	}
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening the current network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering the interface's network namespace (needs CAP_SYS_ADMIN): %w", err)
	}
	defer func() {
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// lockName is an abstract socket name: x/sys/unix turns the leading '@'
// into the NUL byte of the abstract namespace.
func lockName(progID uint32, what string) string {
	return fmt.Sprintf("@zerohop/xdp/%d/%s", progID, what)
}

func slotLockName(progID uint32, slot int) string {
	return lockName(progID, fmt.Sprintf("slot/%d", slot))
}

// errLockHeld: another socket holds the name.
var errLockHeld = errors.New("lock held")

// tryLock binds a new socket of the namespace to the abstract name and
// returns its fd, or errLockHeld.
func (n *netns) tryLock(name string) (int, error) {
	fd := -1
	err := n.do(func() error {
		s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("unix socket for lock %s: %w", name, err)
		}
		fd = s
		return nil
	})
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return -1, errLockHeld
		}
		return -1, fmt.Errorf("binding lock %s: %w", name, err)
	}
	// Probes then fail with EPIPE instead of queueing datagrams.
	if err := unix.Shutdown(fd, unix.SHUT_RD); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("shutting down reads on lock %s: %w", name, err)
	}
	leak.Track(fd)
	return fd, nil
}

// lock is tryLock retried while the name is held, for at most budget:
// holders keep locks like the registry for a few map operations only, and
// one killed while holding it drops it at once.
func (n *netns) lock(name string, budget time.Duration) (int, error) {
	deadline := time.Now().Add(budget)
	backoff := 100 * time.Microsecond
	for {
		fd, err := n.tryLock(name)
		if !errors.Is(err, errLockHeld) {
			return fd, err
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("%w: %s still held after %v (a zerohop process stopped while editing the services?)",
				ErrBusy, name, budget)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Millisecond)
	}
}

func unlock(fd int) {
	if fd >= 0 {
		leak.Untrack(fd)
		unix.Close(fd)
	}
}

// prober tells held lock names from free ones.
type prober struct{ fd int }

func (n *netns) newProber() (*prober, error) {
	p := &prober{fd: -1}
	err := n.do(func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("unix socket for probing locks: %w", err)
		}
		p.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	leak.Track(p.fd)
	return p, nil
}

// held reports whether a socket holds the name.
func (p *prober) held(name string) (bool, error) {
	err := unix.Sendto(p.fd, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, &unix.SockaddrUnix{Name: name})
	switch {
	case err == nil, errors.Is(err, unix.EPIPE), errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EPERM):
		// EPERM: the holder is connected to someone else; still held.
		return true, nil
	case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, fmt.Errorf("probing lock %s: %w", name, err)
}

func (p *prober) close() {
	if p != nil && p.fd >= 0 {
		leak.Untrack(p.fd)
		unix.Close(p.fd)
		p.fd = -1
	}
}

package uring

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { leak.Main(m) }

// newRing creates a ring on the test goroutine's OS thread, locked for the
// test's lifetime (SingleIssuer/DeferTaskrun rings need that).
func newRing(t testing.TB, entries uint32, opts ...Option) *Ring {
	t.Helper()
	runtime.LockOSThread()
	r, err := New(entries, opts...)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		runtime.UnlockOSThread()
	})
	return r
}

// loopRing is the ring an event loop uses.
func loopRing(t testing.TB, entries uint32) *Ring {
	return newRing(t, entries, WithDeferTaskrun(), WithCoopTaskrun())
}

// collect submits, waits and reaps until at least n CQEs arrived, failing
// the test after a generous bound (never a timing assertion).
func collect(t testing.TB, r *Ring, n int) []CQE {
	t.Helper()
	return collectUntil(t, r, func(got []CQE) bool { return len(got) >= n })
}

func collectUntil(t testing.TB, r *Ring, done func([]CQE) bool) []CQE {
	t.Helper()
	var got []CQE
	buf := make([]CQE, 64)
	deadline := time.Now().Add(10 * time.Second)
	for !done(got) {
		if time.Now().After(deadline) {
			t.Fatalf("completions did not arrive within 10s; got %+v", got)
		}
		if _, err := r.SubmitAndWait(1, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		k := r.Reap(buf)
		got = append(got, buf[:k]...)
	}
	return got
}

func byUserData(cqes []CQE) map[uint64][]CQE {
	m := map[uint64][]CQE{}
	for _, c := range cqes {
		m[c.UserData] = append(m[c.UserData], c)
	}
	return m
}

func closeFd(t testing.TB, fd int) {
	t.Cleanup(func() {
		leak.Untrack(fd)
		unix.Close(fd)
	})
}

// udpSocket returns a UDP socket bound to an ephemeral loopback port.
func udpSocket(t testing.TB) (int, netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	leak.Track(fd)
	closeFd(t, fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	return fd, localAddr(t, fd)
}

func localAddr(t testing.TB, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	t.Fatalf("unexpected sockaddr %T", sa)
	return netip.AddrPort{}
}

func sockaddr4(ap netip.AddrPort) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
}

func pipe(t testing.TB) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	for _, fd := range p {
		leak.Track(fd)
		closeFd(t, fd)
	}
	return p[0], p[1]
}

package bpf

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
)

// stubXSK is the least AF_XDP socket the XSKMAP accepts: a UMEM, fill,
// completion and RX rings of a few entries, bound in copy mode to one queue.
// Nothing maps the rings or fills the fill ring, so every frame redirected
// to it is dropped by the kernel and counted in its statistics. The xsk
// package provides real sockets; this keeps the bpf tests independent.
type stubXSK struct {
	fd       int
	umemAddr uintptr
	umemSize uintptr
}

func newStubXSK(t *testing.T, ep topo.Endpoint, queue int) *stubXSK {
	t.Helper()
	const frameSize, frames, ringSize = 4096, 16, 64
	s := &stubXSK{fd: -1, umemSize: frameSize * frames}
	t.Cleanup(func() {
		if s.fd >= 0 {
			leak.Untrack(s.fd)
			unix.Close(s.fd)
		}
		if s.umemAddr != 0 {
			unix.Syscall(unix.SYS_MUNMAP, s.umemAddr, s.umemSize, 0)
		}
	})
	err := ep.Host.Do(func() error {
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		leak.Track(fd)
		// The UMEM is anonymous memory mapped outside the Go heap; the
		// kernel only needs its address.
		addr, _, errno := unix.Syscall6(unix.SYS_MMAP, 0, s.umemSize, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE, ^uintptr(0), 0)
		if errno != 0 {
			return errno
		}
		s.umemAddr = addr
		// struct xdp_umem_reg: addr, len, chunk_size, headroom, flags, tx_metadata_len.
		reg := make([]byte, 32)
		binary.NativeEndian.PutUint64(reg[0:], uint64(addr))
		binary.NativeEndian.PutUint64(reg[8:], uint64(s.umemSize))
		binary.NativeEndian.PutUint32(reg[16:], frameSize)
		if err := unix.SetsockoptString(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, string(reg)); err != nil {
			return err
		}
		for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
			if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, ringSize); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ep.Ifindex), QueueID: uint32(queue)})
	})
	if err != nil {
		t.Fatalf("stub AF_XDP socket on %s queue %d: %v", ep.Iface, queue, err)
	}
	return s
}

// rxDropped reads rx_dropped from the socket's statistics: frames that
// reached it and were dropped for want of fill ring entries. getsockopt
// with a 32-byte buffer returns struct xdp_statistics_v1 (three u64s:
// rx_dropped, rx_invalid_descs, tx_invalid_descs); ICMPv6Filter is simply
// the 32-byte struct x/sys offers a getsockopt for, without unsafe.
func (s *stubXSK) rxDropped(t *testing.T) uint64 {
	t.Helper()
	raw, err := unix.GetsockoptICMPv6Filter(s.fd, unix.SOL_XDP, unix.XDP_STATISTICS)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	binary.NativeEndian.PutUint32(b[0:], raw.Data[0])
	binary.NativeEndian.PutUint32(b[4:], raw.Data[1])
	return binary.NativeEndian.Uint64(b[:])
}

// Service packets go to the socket registered for the queue: the kernel
// socket on the same port sees nothing; after ClearSocket it does again.
func TestServiceRedirectsToSocket(t *testing.T) {
	f := newFixture(t, Options{})
	link, p := f.link, f.prog
	const port = 7600
	if err := p.AddService(Service{Port: port, ID: 1}); err != nil {
		t.Fatal(err)
	}
	sink := newSink(t, link.A.Host, port)
	xsk := newStubXSK(t, link.A, 0)
	if err := p.SetSocket(0, xsk.fd); err != nil {
		t.Fatal(err)
	}

	before := counters(t, p.Maps)
	for range 3 {
		f.sender.send(t, link.A.Addr4, port, []byte("to xsk"))
		f.sender.send(t, link.A.Addr6, port, []byte("to xsk"))
	}
	f.settle(t)
	if got := sink.drain(t); len(got) != 0 {
		t.Fatalf("kernel socket got %d datagrams meant for the XSK", len(got))
	}
	checkDelta(t, before, counters(t, p.Maps), Counters{Seen: 7, Passed: 1, Redirected: 6})
	if got := xsk.rxDropped(t); got != 6 {
		t.Fatalf("the socket's rx_dropped = %d, want the 6 redirected frames", got)
	}

	if err := p.ClearSocket(0); err != nil {
		t.Fatal(err)
	}
	if err := p.ClearSocket(0); err != nil {
		t.Fatalf("ClearSocket on an empty queue: %v", err)
	}
	before = counters(t, p.Maps)
	f.sender.send(t, link.A.Addr4, port, []byte("to kernel"))
	f.settle(t)
	if got := sink.drain(t); len(got) != 1 {
		t.Fatalf("after ClearSocket the kernel socket got %d datagrams, want 1", len(got))
	}
	checkDelta(t, before, counters(t, p.Maps), Counters{Seen: 2, Passed: 2, NoSocket: 1})

	if err := p.SetSocket(p.Queues(), xsk.fd); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetSocket on queue %d: %v, want ErrInvalid", p.Queues(), err)
	}
	if err := p.SetSocket(0, f.marker.fd); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetSocket with a UDP socket: %v, want ErrInvalid", err)
	}
}

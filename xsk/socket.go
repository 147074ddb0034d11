package xsk

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
)

// SocketConfig sizes one socket. The zero value takes every unassigned
// frame of the UMEM and 2048-entry rings.
type SocketConfig struct {
	// FrameCount is the number of UMEM frames this socket owns; zero
	// takes the largest unassigned run of frames.
	FrameCount int
	// RXSize, TXSize, FillSize and CompletionSize are ring sizes in
	// entries, powers of two; zero means 2048.
	RXSize, TXSize, FillSize, CompletionSize int
	// CopyOnly skips the zero-copy attempt and binds in copy mode.
	CopyOnly bool
}

const defaultRingSize = 2048

// Bind retry on EBUSY: the kernel releases a closed socket's hold on its
// queue from a work item, ~25 ms after close on these machines.
const (
	bindBusyBackoffFirst = time.Millisecond
	bindBusyBackoffMax   = 32 * time.Millisecond
	bindBusyBudget       = 2 * time.Second
)

// Socket is an AF_XDP socket bound to one interface queue, with its own
// fill, RX, TX and completion rings and its own range of UMEM frames.
//
// A Socket is driven by one goroutine at a time (the event loop of its
// queue); only Open and Close synchronise with other sockets of the UMEM.
// After Close only Close, FD (-1) and the getters may be called; the data
// path methods would touch unmapped rings.
type Socket struct {
	fd       int
	umem     *UMEM
	ifindex  int
	queue    int
	zeroCopy bool
	// needWakeup: bound with XDP_USE_NEED_WAKEUP (directly, or inherited
	// from the socket whose UMEM registration this one shares).
	needWakeup bool
	sharedUMEM bool

	fill fillQueue
	rx   rxQueue
	tx   txQueue
	comp completionQueue

	frames   frameRange
	free     []uint64     // stack of free frame addresses; cap = frames.count
	state    []frameState // per frame of our range, for accounting
	counts   [stateCount]int
	counters Counters
	closed   bool
}

// Open creates an AF_XDP socket on the UMEM and binds it to queue of the
// interface ifindex, trying zero-copy first unless cfg.CopyOnly (see
// ZeroCopy for what it got). The first socket of a UMEM registers it; while
// one is open, the next ones share its registration with their own fill
// and completion rings (XDP_SHARED_UMEM). A queue still held by a socket
// closed a moment ago (EBUSY) is retried with a bounded backoff.
func (u *UMEM) Open(ifindex, queue int, cfg SocketConfig) (s *Socket, err error) {
	sizes := []*int{&cfg.RXSize, &cfg.TXSize, &cfg.FillSize, &cfg.CompletionSize}
	for _, size := range sizes {
		if *size == 0 {
			*size = defaultRingSize
		}
		if *size < 1 || *size > 1<<20 || bits.OnesCount(uint(*size)) != 1 {
			return nil, fmt.Errorf("xsk: open queue %d: ring size %d is not a power of two in 1..2^20", queue, *size)
		}
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, fmt.Errorf("xsk: open queue %d: %w", queue, ErrClosed)
	}
	for _, other := range u.sockets {
		if other.ifindex == ifindex && other.queue == queue {
			return nil, fmt.Errorf("xsk: open ifindex %d queue %d: %w", ifindex, queue, ErrQueueTaken)
		}
	}
	frames, err := u.takeFrames(cfg.FrameCount)
	if err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: %w", queue, err)
	}
	sock := &Socket{fd: -1, umem: u, ifindex: ifindex, queue: queue, frames: frames}
	s = sock
	defer func() {
		// An error return has set s to nil by now: release through sock.
		if err != nil {
			sock.release()
			u.giveFrames(frames)
		}
	}()

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			err = fmt.Errorf("%w (kernel without CONFIG_XDP_SOCKETS): %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("xsk: open queue %d: socket(AF_XDP): %w", queue, err)
	}
	leak.Track(fd)
	s.fd = fd

	var owner *Socket
	if len(u.sockets) > 0 {
		owner = u.sockets[0]
	} else {
		reg := unix.XDPUmemReg{
			Addr:     uint64(sliceAddr(u.mem)),
			Len:      uint64(len(u.mem)),
			Size:     uint32(u.frameSize),
			Headroom: u.headroom,
		}
		if err := setsockoptUMEMReg(fd, &reg); err != nil {
			return nil, fmt.Errorf("xsk: open queue %d: register UMEM (%d bytes): %w%s", queue, len(u.mem), err, hintPerm(err))
		}
	}
	for _, opt := range []struct {
		name  int
		value int
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillSize},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompletionSize},
		{unix.XDP_RX_RING, cfg.RXSize},
		{unix.XDP_TX_RING, cfg.TXSize},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt.name, opt.value); err != nil {
			return nil, fmt.Errorf("xsk: open queue %d: set ring size (option %d) to %d: %w", queue, opt.name, opt.value, err)
		}
	}
	off, err := getsockoptMmapOffsets(fd)
	if err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: XDP_MMAP_OFFSETS: %w", queue, err)
	}
	if s.fill, err = mapFillQueue(fd, off.Fr, uint32(cfg.FillSize)); err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: fill ring: %w", queue, err)
	}
	if s.comp, err = mapCompletionQueue(fd, off.Cr, uint32(cfg.CompletionSize)); err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: completion ring: %w", queue, err)
	}
	if s.rx, err = mapRXQueue(fd, off.Rx, uint32(cfg.RXSize)); err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: RX ring: %w", queue, err)
	}
	if s.tx, err = mapTXQueue(fd, off.Tx, uint32(cfg.TXSize)); err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: TX ring: %w", queue, err)
	}

	if owner != nil {
		// The kernel refuses any other flag on a shared bind: mode and
		// need_wakeup come from the owner's registration.
		err = s.bind(unix.XDP_SHARED_UMEM, owner.fd)
		s.sharedUMEM, s.needWakeup = true, owner.needWakeup
	} else {
		err = unix.EOPNOTSUPP
		if !cfg.CopyOnly {
			err = s.bind(unix.XDP_ZEROCOPY|unix.XDP_USE_NEED_WAKEUP, 0)
		}
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = s.bind(unix.XDP_COPY|unix.XDP_USE_NEED_WAKEUP, 0)
		}
		s.needWakeup = true
	}
	if err != nil {
		return nil, fmt.Errorf("xsk: open: bind ifindex %d queue %d: %w", ifindex, queue, err)
	}
	opts, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return nil, fmt.Errorf("xsk: open queue %d: XDP_OPTIONS: %w", queue, err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0

	s.free = make([]uint64, 0, frames.count)
	s.state = make([]frameState, frames.count)
	// Push in reverse so the lowest frames come off the stack first.
	for i := frames.count - 1; i >= 0; i-- {
		s.free = append(s.free, uint64(frames.first+i)*u.frameSize)
	}
	s.counts[stateFree] = frames.count
	u.sockets = append(u.sockets, s)
	return s, nil
}

// bind binds with flags, retrying EBUSY while the queue's previous socket
// is being released.
func (s *Socket) bind(flags uint16, sharedFD int) error {
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(s.ifindex), QueueID: uint32(s.queue), SharedUmemFD: uint32(sharedFD)}
	backoff := bindBusyBackoffFirst
	deadline := time.Now().Add(bindBusyBudget)
	for {
		err := unix.Bind(s.fd, sa)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("flags %#x: %w%s", flags, err, hintPerm(err))
			}
			return nil
		}
		s.counters.BindBusyRetries++
		time.Sleep(backoff)
		backoff = min(2*backoff, bindBusyBackoffMax)
	}
}

func hintPerm(err error) string {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return " (needs CAP_NET_RAW, plus CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK for the UMEM)"
	}
	return ""
}

// release unmaps the rings in reverse order of mapping and closes the
// descriptor; it tolerates a partly set up socket.
func (s *Socket) release() error {
	var errs []error
	for _, r := range []*ring{&s.tx.ring, &s.rx.ring, &s.comp.ring, &s.fill.ring} {
		if err := r.unmap(); err != nil {
			errs = append(errs, fmt.Errorf("munmap ring: %w", err))
		}
	}
	if s.fd >= 0 {
		leak.Untrack(s.fd)
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		s.fd = -1
	}
	return errors.Join(errs...)
}

// Close unbinds the socket (the kernel also removes it from any XSKMAP),
// unmaps its rings and gives its frames back to the UMEM. Frames the
// caller still held are forfeit; slices from Frame must not be used.
func (s *Socket) Close() error {
	u := s.umem
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	u.sockets = slices.DeleteFunc(u.sockets, func(x *Socket) bool { return x == s })
	err := s.release()
	u.giveFrames(s.frames)
	if err != nil {
		return fmt.Errorf("xsk: close queue %d: %w", s.queue, err)
	}
	return nil
}

// FD is the socket's descriptor: poll it for POLLIN (RX ready) and POLLOUT,
// kick TX with sendto/sendmsg on it, and insert it into an XSKMAP keyed by
// Queue. It is valid until Close.
func (s *Socket) FD() int { return s.fd }

// Queue is the interface queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Ifindex is the interface the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode;
// false means copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// SharedUMEM reports whether the socket shares another socket's UMEM
// registration (bound with XDP_SHARED_UMEM).
func (s *Socket) SharedUMEM() bool { return s.sharedUMEM }

// UMEM is the UMEM the socket's frames live in.
func (s *Socket) UMEM() *UMEM { return s.umem }

// XSKMap is the part of a BPF_MAP_TYPE_XSKMAP handle that Register needs;
// *ebpf.Map from github.com/cilium/ebpf satisfies it.
type XSKMap interface {
	Put(key, value any) error
}

// Register inserts the socket into an XSKMAP under its queue id, so an XDP
// program's bpf_redirect_map(&xsks, ctx->rx_queue_index, …) reaches it.
// Close removes it from the map again.
func (s *Socket) Register(m XSKMap) error {
	if err := m.Put(uint32(s.queue), uint32(s.fd)); err != nil {
		return fmt.Errorf("xsk: register queue %d in XSKMAP: %w", s.queue, err)
	}
	return nil
}

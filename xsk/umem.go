package xsk

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// UMEMConfig sizes a UMEM. The zero value is 4096 frames of 2048 bytes
// without extra headroom, on normal pages.
type UMEMConfig struct {
	// FrameCount is the number of frames; zero means 4096.
	FrameCount int
	// FrameSize is the size of one frame in bytes, 2048 or 4096; zero
	// means 2048.
	FrameSize int
	// Headroom is the number of bytes the kernel leaves free in front of
	// each received packet, on top of XDP_PACKET_HEADROOM (256). Replies
	// built in place can grow their headers into it.
	Headroom int
	// HugePages asks for the frames to be backed by huge pages; without
	// reserved huge pages the UMEM falls back to normal pages (see
	// (*UMEM).HugePages).
	HugePages bool
}

const (
	defaultFrameCount = 4096
	defaultFrameSize  = 2048
	hugePageSize      = 2 << 20
)

// UMEM is the packet memory shared by one or more AF_XDP sockets: an
// mmap'd area cut into equal frames. Each Socket opened on it owns a
// disjoint range of the frames, so sockets never contend for frames.
//
// The kernel learns about the UMEM when the first socket registers it; the
// sockets opened while another is live share that registration
// (XDP_SHARED_UMEM). Open and Close of sockets are safe from several
// goroutines; everything else on a Socket belongs to one goroutine.
type UMEM struct {
	mem        []byte
	frameSize  uint64
	frameCount int
	headroom   uint32
	hugePages  bool

	mu      sync.Mutex // Open and Close only; never on the data path
	unused  []frameRange
	sockets []*Socket // live, bound sockets in the order they were opened
	closed  bool
	// keepMapped: Close poisons the frames and leaves them mapped.
	keepMapped bool
}

// PoisonByte fills the frames KeepMappedOnClose leaves behind.
const PoisonByte = 0xDB

// KeepMappedOnClose is for debugging buffer lifetimes: Close overwrites
// the frames with PoisonByte and leaves them mapped until the process
// exits, so code that kept a slice of a frame reads garbage instead of
// faulting. It leaks the UMEM's memory by design.
func (u *UMEM) KeepMappedOnClose() {
	u.mu.Lock()
	u.keepMapped = true
	u.mu.Unlock()
}

// frameRange is a run of frames [first, first+count).
type frameRange struct{ first, count int }

// NewUMEM maps the memory for a UMEM. It is not yet known to the kernel:
// the first Open registers it.
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	if cfg.FrameCount == 0 {
		cfg.FrameCount = defaultFrameCount
	}
	if cfg.FrameSize == 0 {
		cfg.FrameSize = defaultFrameSize
	}
	if cfg.FrameSize != 2048 && cfg.FrameSize != 4096 {
		return nil, fmt.Errorf("xsk: new UMEM: frame size %d, want 2048 or 4096", cfg.FrameSize)
	}
	if cfg.FrameCount < 1 || cfg.FrameCount > 1<<24 {
		return nil, fmt.Errorf("xsk: new UMEM: frame count %d, want 1..%d", cfg.FrameCount, 1<<24)
	}
	// The kernel needs room for XDP_PACKET_HEADROOM and a packet after the
	// headroom we ask for.
	if cfg.Headroom < 0 || cfg.Headroom > cfg.FrameSize-unix.XDP_PACKET_HEADROOM-128 {
		return nil, fmt.Errorf("xsk: new UMEM: headroom %d does not fit a %d-byte frame", cfg.Headroom, cfg.FrameSize)
	}
	length := cfg.FrameCount * cfg.FrameSize
	u := &UMEM{
		frameSize:  uint64(cfg.FrameSize),
		frameCount: cfg.FrameCount,
		headroom:   uint32(cfg.Headroom),
		unused:     []frameRange{{0, cfg.FrameCount}},
	}
	if cfg.HugePages {
		rounded := (length + hugePageSize - 1) &^ (hugePageSize - 1)
		mem, err := unix.Mmap(-1, 0, rounded, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE|unix.MAP_HUGETLB)
		if err == nil {
			u.mem, u.hugePages = mem[:length], true
		}
		// Any failure (no huge pages reserved: ENOMEM; no hugetlbfs:
		// EINVAL) falls back to normal pages below.
	}
	if u.mem == nil {
		mem, err := unix.Mmap(-1, 0, length, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("xsk: new UMEM: mmap %d bytes: %w", length, err)
		}
		u.mem = mem
	}
	mappings.Add(1)
	return u, nil
}

// FrameSize is the size of one frame in bytes.
func (u *UMEM) FrameSize() int { return int(u.frameSize) }

// FrameCount is the number of frames in the UMEM.
func (u *UMEM) FrameCount() int { return u.frameCount }

// HugePages reports whether the frames are backed by huge pages.
func (u *UMEM) HugePages() bool { return u.hugePages }

// Headroom is the configured headroom (see UMEMConfig.Headroom).
func (u *UMEM) Headroom() int { return int(u.headroom) }

// RXOffset is where the kernel places a received packet inside its frame
// in copy mode: the configured headroom plus XDP_PACKET_HEADROOM.
func (u *UMEM) RXOffset() int { return int(u.headroom) + unix.XDP_PACKET_HEADROOM }

// Frame returns the bytes from addr to the end of addr's frame. The slice
// aliases the UMEM: it stays valid while the caller owns the frame (from
// Receive or Alloc until Transmit or Release) and while the UMEM is open.
func (u *UMEM) Frame(addr uint64) []byte {
	end := (addr/u.frameSize + 1) * u.frameSize
	return u.mem[addr:end:end]
}

// Close closes every socket still open on the UMEM, newest first, then
// unmaps the frames. Slices returned by Frame must not be used afterwards.
func (u *UMEM) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	sockets := append([]*Socket(nil), u.sockets...)
	u.mu.Unlock()
	var errs []error
	for i := len(sockets) - 1; i >= 0; i-- {
		errs = append(errs, sockets[i].Close())
	}
	if u.keepMapped {
		for i := range u.mem {
			u.mem[i] = PoisonByte
		}
	} else if err := unix.Munmap(u.mem); err != nil {
		errs = append(errs, fmt.Errorf("xsk: close UMEM: munmap: %w", err))
	}
	u.mem = nil
	mappings.Add(-1)
	return errors.Join(errs...)
}

// takeFrames carves count frames (0: all unassigned) out of the unused
// ranges, first fit. Caller holds u.mu.
func (u *UMEM) takeFrames(count int) (frameRange, error) {
	if count == 0 {
		best := -1
		for i, r := range u.unused {
			if best < 0 || r.count > u.unused[best].count {
				best = i
			}
		}
		if best < 0 {
			return frameRange{}, ErrNoFrames
		}
		count = u.unused[best].count
	}
	for i, r := range u.unused {
		if r.count < count {
			continue
		}
		taken := frameRange{r.first, count}
		if r.count == count {
			u.unused = append(u.unused[:i], u.unused[i+1:]...)
		} else {
			u.unused[i] = frameRange{r.first + count, r.count - count}
		}
		return taken, nil
	}
	return frameRange{}, fmt.Errorf("%w: want %d contiguous frames", ErrNoFrames, count)
}

// giveFrames returns a range and merges it with its neighbours. Caller
// holds u.mu.
func (u *UMEM) giveFrames(r frameRange) {
	i := 0
	for i < len(u.unused) && u.unused[i].first < r.first {
		i++
	}
	u.unused = append(u.unused, frameRange{})
	copy(u.unused[i+1:], u.unused[i:])
	u.unused[i] = r
	merged := u.unused[:0]
	for _, x := range u.unused {
		if n := len(merged); n > 0 && merged[n-1].first+merged[n-1].count == x.first {
			merged[n-1].count += x.count
			continue
		}
		merged = append(merged, x)
	}
	u.unused = merged
}

// Package xskhook is the seam between the runtime and its AF_XDP path.
// The runtime asks for an AF_XDP data path only through Open, which the
// package runtime/xdp sets when a program imports it; so a program that
// only calls (or serves on kernel sockets) links neither the AF_XDP path
// nor cilium/ebpf. Nothing here imports either.
package xskhook

import (
	"log/slog"
	"net/netip"

	"github.com/zerohop/zerohop/runtime/internal/engine"
)

// Request is what a server asks of the AF_XDP path.
type Request struct {
	// Iface is the interface; Addr the served address (its port is
	// steered).
	Iface string
	Addr  netip.AddrPort
	// Queues restricts the RX queues (nil: every queue no other server
	// holds); Cores pins queue i's loop (nil: IRQ affinity, else queue
	// mod CPUs).
	Queues, Cores []int
	// Frames sizes the UMEM.
	Frames int
	// PinMaps pins the program's maps; ReusePort lets the port be shared;
	// KeepMapped poisons the UMEM and leaves it mapped at close.
	PinMaps, ReusePort, KeepMapped bool
	// RequireSealed: the server requires sealed frames (SealStrict); the
	// steering program drops unsealed requests to the port.
	RequireSealed bool
	Logger        *slog.Logger
}

// Loop is one loop the AF_XDP path wants: the RX queues whose sockets it
// drives, their sources (one per queue, in order), and its core.
type Loop struct {
	Queues  []int
	Sources []engine.Source
	Core    int
}

// SocketStats are one AF_XDP socket's counters.
type SocketStats struct {
	Queue  int
	RX, TX uint64
	// FillRingEmpty: how often the kernel found the fill ring dry (and
	// dropped a packet).
	FillRingEmpty uint64
}

// Path is an opened AF_XDP data path.
type Path interface {
	// Loops is the loop plan, queues sharing a core on one loop.
	Loops() []Loop
	// Steer starts steering the port to the sockets (once their loops are
	// set up); Unsteer stops it (first thing on stop); Close releases
	// everything after the loops have stopped.
	Steer() error
	Unsteer() error
	Close() error
	// Stats reads every socket's counters.
	Stats() []SocketStats
	// IRQ is the interrupt of queue q (-1: none of its own).
	IRQ(q int) int
	// Describe names the path; DescribeLoops is the queue → IRQ → core
	// map; CoresFrom says where the cores came from; Iface the interface.
	Describe() string
	DescribeLoops() string
	CoresFrom() string
	Iface() string
}

// Fatal marks an error that must not make BackendAuto fall back to
// kernel sockets: the caller asked for something that does not exist or
// is taken.
type Fatal struct{ Err error }

func (e *Fatal) Error() string { return e.Err.Error() }
func (e *Fatal) Unwrap() error { return e.Err }

// Open opens the AF_XDP path; nil until runtime/xdp is linked in.
var Open func(Request) (Path, error)

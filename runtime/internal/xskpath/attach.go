package xskpath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/xsk"
)

// Config is what an attachment needs.
type Config struct {
	// Iface is the interface; Addr the served address (its port is
	// steered; an unspecified address matches every destination).
	Iface string
	Addr  netip.AddrPort
	// Queues are the RX queues to bind a socket to.
	Queues []int
	// Frames sizes the UMEM shared by every socket.
	Frames int
	// PinMaps pins the program's maps under /sys/fs/bpf/zerohop/<iface>.
	PinMaps bool
}

// Attachment is a server's hold on an interface: the XDP steering, one
// UMEM, one AF_XDP socket per queue. The port is steered only between
// Steer and Unsteer, so it is never black-holed while no socket can
// receive.
type Attachment struct {
	cfg     Config
	ifindex int
	mtu     int
	prog    *bpf.Program
	svc     bpf.Service
	steered bool

	// mu keeps Stats from reading socket statistics while Close closes
	// the sockets (and their descriptor numbers get reused).
	mu      sync.Mutex
	umem    *xsk.UMEM
	sockets []*Socket
}

// Attach loads (or joins) the steering program on cfg.Iface, makes the
// UMEM and binds one socket per queue, registering each in the program's
// socket map. Nothing is steered yet.
func Attach(cfg Config) (_ *Attachment, err error) {
	if cfg.Addr.Port() == 0 {
		return nil, errors.New("needs an explicit port (the XDP program steers by port)")
	}
	if err := xsk.HaveAFXDP(); err != nil {
		return nil, fmt.Errorf("AF_XDP sockets: %w", err)
	}
	ifc, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", cfg.Iface, err)
	}
	a := &Attachment{cfg: cfg, ifindex: ifc.Index, mtu: ifc.MTU}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	a.prog, err = bpf.Attach(cfg.Iface, bpf.Options{Pin: cfg.PinMaps})
	if err != nil {
		return nil, fmt.Errorf("attaching XDP to %s: %w", cfg.Iface, err)
	}
	a.umem, err = xsk.NewUMEM(xsk.UMEMConfig{FrameCount: cfg.Frames, FrameSize: frameSize})
	if err != nil {
		return nil, fmt.Errorf("UMEM of %d frames: %w", cfg.Frames, err)
	}
	perSocket := cfg.Frames / len(cfg.Queues)
	rxRing := ringSize(perSocket/2, 8192)
	txRing := ringSize(perSocket/4, 4096)
	for _, q := range cfg.Queues {
		sock, err := a.umem.Open(a.ifindex, q, xsk.SocketConfig{FrameCount: perSocket,
			RXSize: rxRing, FillSize: rxRing, TXSize: txRing, CompletionSize: txRing})
		if err != nil {
			return nil, fmt.Errorf("AF_XDP socket on %s queue %d: %w", cfg.Iface, q, err)
		}
		a.sockets = append(a.sockets, &Socket{sock: sock, port: cfg.Addr.Port(), mtu: a.mtu})
		if err := a.prog.SetSocket(q, sock.FD()); err != nil {
			return nil, fmt.Errorf("registering queue %d's socket: %w", q, err)
		}
	}
	a.svc = bpf.Service{Port: cfg.Addr.Port(), ID: 1}
	if !cfg.Addr.Addr().IsUnspecified() {
		a.svc.Addr = cfg.Addr.Addr()
	}
	return a, nil
}

// ringSize is the largest power of two ≤ min(n, limit), at least 64.
func ringSize(n, limit int) int {
	n = min(n, limit)
	size := 64
	for size*2 <= n {
		size *= 2
	}
	return size
}

// Sockets are the attachment's sockets, one per queue in Config.Queues
// order: engine sources to add to the loops.
func (a *Attachment) Sockets() []*Socket { return a.sockets }

// Steer starts steering the port to the sockets; call it once their
// loops are set up (their fill rings are full).
func (a *Attachment) Steer() error {
	if err := a.prog.AddService(a.svc); err != nil {
		return fmt.Errorf("steering port %d: %w", a.svc.Port, err)
	}
	a.steered = true
	return nil
}

// Unsteer stops steering the port: from now on its datagrams go to the
// kernel (and its sockets). First thing on stop.
func (a *Attachment) Unsteer() error {
	if !a.steered {
		return nil
	}
	a.steered = false
	if err := a.prog.RemoveService(a.svc.Port, a.svc.Addr); err != nil {
		return fmt.Errorf("unsteering port %d: %w", a.svc.Port, err)
	}
	return nil
}

// Close releases everything, after the loops have stopped: the program
// first (so nothing more is redirected), then the sockets and the UMEM.
func (a *Attachment) Close() error {
	var errs []error
	if a.prog != nil {
		errs = append(errs, a.prog.Close())
		a.prog = nil
	}
	a.mu.Lock()
	if a.umem != nil {
		errs = append(errs, a.umem.Close())
		a.umem = nil
	}
	a.mu.Unlock()
	return errors.Join(errs...)
}

// FillRingEmpty reads how often each socket's fill ring ran dry (the
// kernel then dropped packets), in Sockets order.
func (a *Attachment) FillRingEmpty() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]uint64, len(a.sockets))
	if a.umem == nil {
		return out
	}
	for i, s := range a.sockets {
		if st, err := s.sock.Statistics(); err == nil {
			out[i] = st.RXFillRingEmptyDescs
		}
	}
	return out
}

// Describe names what serves, for the start-up log line.
func (a *Attachment) Describe() string {
	mode := "copy"
	if len(a.sockets) > 0 && a.sockets[0].sock.ZeroCopy() {
		mode = "zero-copy"
	}
	return fmt.Sprintf("AF_XDP on %s, XDP %v mode, %s bind, %d frames of %d bytes", a.cfg.Iface, a.prog.Mode(), mode,
		a.umem.FrameCount(), a.umem.FrameSize())
}

package xskpath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/xsk"
	"golang.org/x/sys/unix"
)

// Config is what an attachment needs.
type Config struct {
	// Iface is the interface; Addr the served address (its port is
	// steered; an unspecified address matches every destination).
	Iface string
	Addr  netip.AddrPort
	// Frames sizes the UMEM shared by every socket.
	Frames int
	// PinMaps pins the program's maps under /sys/fs/bpf/zerohop/<iface>.
	PinMaps bool
	// AcceptPartialChecksum accepts UDP checksums that hold only the
	// pseudo-header sum (a local sender's TX offload). Only for virtual
	// interfaces: see "Partial checksums" in the netstack package doc.
	AcceptPartialChecksum bool
	// OnKeepaliveError hears the errors of the heartbeat goroutine (which
	// the program handle owns), from that goroutine.
	OnKeepaliveError func(error)
	// KeepMapped poisons the UMEM and leaves it mapped at Close
	// (WithPoisonedBuffers).
	KeepMapped bool
	// RequireSealed makes the program drop unsealed requests to the port
	// (bpf.ServiceRequireSealed).
	RequireSealed bool
}

// Attachment is a server's hold on an interface: its slot in the shared
// steering program (joined with bpf.Join; the program's own goroutine
// heartbeats the slot and sweeps the entries of servers that are gone),
// one UMEM, one AF_XDP socket per queue, each registered in the slot. The
// port is steered only between Steer and Unsteer, so it is never
// black-holed while no socket can receive.
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

// Holder is a queue another live zerohop server of the interface holds
// (its AF_XDP socket is bound there, so this process cannot bind it).
type Holder struct {
	Queue int
	Slot  int    // the other server's slot in the program, -1 if unknown
	PID   uint32 // its pid in its own pid namespace, 0 if unknown
}

// Join joins the steering program of cfg.Iface (attaching it when no
// server has yet), clears what servers that are gone left behind, and
// checks that no live server of the interface steers the port already:
// that is an error wrapping bpf.ErrAddrInUse naming the other server.
// Nothing is bound or steered yet (Open, then Steer).
func Join(cfg Config) (_ *Attachment, err error) {
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
	a.prog, err = bpf.Join(cfg.Iface, bpf.Options{Pin: cfg.PinMaps, OnKeepaliveError: cfg.OnKeepaliveError})
	if err != nil {
		return nil, fmt.Errorf("joining the XDP steering program of %s: %w", cfg.Iface, err)
	}
	// The keepalive sweeps about once a second; sweeping now as well makes
	// the check below (and a restart after kill -9) see the truth at once.
	if _, err := a.prog.Sweep(); err != nil {
		return nil, fmt.Errorf("sweeping the steering program of %s: %w", cfg.Iface, err)
	}
	a.svc = bpf.Service{Port: cfg.Addr.Port(), ID: 1}
	if cfg.RequireSealed {
		a.svc.Flags |= bpf.ServiceRequireSealed
	}
	if !cfg.Addr.Addr().IsUnspecified() {
		a.svc.Addr = cfg.Addr.Addr()
	}
	if err := a.checkPort(); err != nil {
		return nil, err
	}
	return a, nil
}

// checkPort fails when a live service of another server covers the port
// and address (the same check AddService makes at Steer, made early so
// that Listen, not Start, reports it).
func (a *Attachment) checkPort() error {
	services, err := a.prog.Services()
	if err != nil {
		return fmt.Errorf("listing the services on %s: %w", a.cfg.Iface, err)
	}
	for _, s := range services {
		if s.Stale || s.Slot == a.prog.Slot() || s.Port != a.svc.Port {
			continue
		}
		if s.Addr.IsValid() && a.svc.Addr.IsValid() && s.Addr != a.svc.Addr {
			continue
		}
		what := fmt.Sprintf("port %d", s.Port)
		if s.Addr.IsValid() {
			what = netip.AddrPortFrom(s.Addr, s.Port).String()
		}
		return fmt.Errorf("%w (%w): %s on %s is steered to another zerohop server (pid %d, slot %d)",
			bpf.ErrAddrInUse, unix.EADDRINUSE, what, a.cfg.Iface, s.PID, s.Slot)
	}
	return nil
}

// Slot is this server's slot in the interface's steering program.
func (a *Attachment) Slot() int { return a.prog.Slot() }

// TakenQueues lists the queues other live zerohop servers of the
// interface hold, with who holds them where the program says.
func (a *Attachment) TakenQueues() ([]Holder, error) {
	queues, err := a.prog.QueuesOfOthers()
	if err != nil {
		return nil, fmt.Errorf("listing the queues of other servers on %s: %w", a.cfg.Iface, err)
	}
	slots, _ := a.prog.Slots() // only names the holders
	var out []Holder
	for _, q := range queues {
		h := Holder{Queue: q, Slot: -1}
		for _, s := range slots {
			if s.Slot != a.prog.Slot() && !s.Stale && slices.Contains(s.Queues, q) {
				h.Slot, h.PID = s.Slot, s.PID
				break
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// DescribeHolders names the queues and their holders for a log line:
// "0,1 (pid 812, slot 0); 2 (pid 900, slot 1)".
func DescribeHolders(hs []Holder) string {
	type key struct {
		slot int
		pid  uint32
	}
	var order []key
	byHolder := map[key][]string{}
	for _, h := range hs {
		k := key{h.Slot, h.PID}
		if _, ok := byHolder[k]; !ok {
			order = append(order, k)
		}
		byHolder[k] = append(byHolder[k], fmt.Sprint(h.Queue))
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		who := "holder unknown"
		if k.slot >= 0 {
			who = fmt.Sprintf("pid %d, slot %d", k.pid, k.slot)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", strings.Join(byHolder[k], ","), who))
	}
	return strings.Join(parts, "; ")
}

// Open makes the UMEM and binds one socket per queue, registering each in
// this server's slot. With optional, a queue whose bind fails with EBUSY
// (another process bound it since TakenQueues looked) is left out and
// reported in skipped; any other failure, or no queue bound at all, is an
// error. Nothing is steered yet.
func (a *Attachment) Open(queues []int, optional bool) (skipped []error, err error) {
	if len(queues) == 0 {
		return nil, errors.New("no queue to bind")
	}
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: a.cfg.Frames, FrameSize: frameSize})
	if err == nil && a.cfg.KeepMapped {
		umem.KeepMappedOnClose()
	}
	if err != nil {
		return nil, fmt.Errorf("UMEM of %d frames: %w", a.cfg.Frames, err)
	}
	a.mu.Lock()
	a.umem = umem
	a.mu.Unlock()
	perSocket := a.cfg.Frames / len(queues)
	rxRing := ringSize(perSocket/2, 8192)
	txRing := ringSize(perSocket/4, 4096)
	parser := socketParser{port: a.cfg.Addr.Port(), acceptPartial: a.cfg.AcceptPartialChecksum}
	for _, q := range queues {
		sock, err := umem.Open(a.ifindex, q, xsk.SocketConfig{FrameCount: perSocket,
			RXSize: rxRing, FillSize: rxRing, TXSize: txRing, CompletionSize: txRing})
		if err != nil {
			err = fmt.Errorf("AF_XDP socket on %s queue %d: %w", a.cfg.Iface, q, err)
			if optional && errors.Is(err, unix.EBUSY) {
				skipped = append(skipped, err)
				continue
			}
			return skipped, err
		}
		a.mu.Lock()
		a.sockets = append(a.sockets, newSocket(sock, parser, a.mtu))
		a.mu.Unlock()
		if err := a.prog.SetSocket(q, sock.FD()); err != nil {
			return skipped, fmt.Errorf("registering queue %d's socket: %w", q, err)
		}
	}
	if len(a.sockets) == 0 {
		return skipped, fmt.Errorf("no queue of %s could be bound: %w", a.cfg.Iface, errors.Join(skipped...))
	}
	return skipped, nil
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

// Sockets are the attachment's sockets, in the order Open bound them:
// engine sources to add to the loops.
func (a *Attachment) Sockets() []*Socket { return a.sockets }

// Queues are the queues the sockets are bound to, ascending.
func (a *Attachment) Queues() []int {
	out := make([]int, len(a.sockets))
	for i, s := range a.sockets {
		out[i] = s.Queue()
	}
	sort.Ints(out)
	return out
}

// Steer starts steering the port to the sockets; call it once their
// loops are set up (their fill rings are full). Frames longer than a UMEM
// frame holds go to the kernel (the hybrid path) instead of being lost.
func (a *Attachment) Steer() error {
	a.svc.MaxLen = uint32(frameSize - unix.XDP_PACKET_HEADROOM)
	if err := a.prog.AddService(a.svc); err != nil {
		return fmt.Errorf("steering port %d on %s: %w", a.svc.Port, a.cfg.Iface, err)
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

// Close releases everything, after the loops have stopped: the slot first
// (its services, then its sockets' entries, so nothing more is
// redirected; the last server's close detaches the program), then the
// sockets and the UMEM.
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

// SocketStats are one socket's counters.
type SocketStats struct {
	Queue  int
	RX, TX uint64
	// FillRingEmpty: how often the kernel found the fill ring dry (and
	// dropped a packet).
	FillRingEmpty uint64
}

// Stats reads every socket's counters, in Sockets order.
func (a *Attachment) Stats() []SocketStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]SocketStats, len(a.sockets))
	for i, s := range a.sockets {
		out[i] = SocketStats{Queue: s.queue, RX: s.rxCount.Load(), TX: s.txCount.Load()}
		if a.umem == nil {
			continue
		}
		if st, err := s.sock.Statistics(); err == nil {
			out[i].FillRingEmpty = st.RXFillRingEmptyDescs
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
	loaded := "joined"
	if a.prog.Loaded() {
		loaded = "attached"
	}
	partial := ""
	if a.cfg.AcceptPartialChecksum {
		partial = ", partial checksums accepted (virtual interface)"
	}
	return fmt.Sprintf("AF_XDP on %s, XDP %v mode (%s program %d, slot %d), %s bind, %d frames of %d bytes%s",
		a.cfg.Iface, a.prog.Mode(), loaded, a.prog.ID(), a.prog.Slot(), mode,
		a.umem.FrameCount(), a.umem.FrameSize(), partial)
}

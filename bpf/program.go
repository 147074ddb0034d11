package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
)

// Mode is how the XDP program is attached to the interface.
type Mode int

const (
	// ModeAuto tries native (driver) mode and falls back to generic.
	ModeAuto Mode = iota
	// ModeNative runs the program in the driver, before an skb exists.
	ModeNative
	// ModeGeneric runs the program on skbs in the core stack; every
	// driver supports it, and it is slower.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

func (m Mode) flags() link.XDPAttachFlags {
	if m == ModeGeneric {
		return link.XDPGenericMode
	}
	return link.XDPDriverMode
}

// DefaultHeartbeatInterval is how often a Program's keepalive stamps its
// slot: four heartbeats per StaleAfter, so one late tick never makes a live
// server stale.
const DefaultHeartbeatInterval = StaleAfter / 4

// sweepEvery: the keepalive sweeps once every this many heartbeats (~1 s).
const sweepEvery = 4

// Options configure Join. The zero value attaches in the best mode (when
// nothing is attached yet), pins nothing and keeps the heartbeat itself.
type Options struct {
	// Mode forces an attach mode; ModeAuto (zero) tries native first. It
	// only matters to the server that attaches the program: a server that
	// joins gets the mode the program already runs in (Program.Mode).
	Mode Mode
	// Pin pins the maps under PinRoot/<iface>/ so that other processes
	// of this mount namespace (the CLI) can read counters and edit ACLs;
	// the last server of the interface that pinned them unpins them. Pins
	// are an extra: servers share the program through the interface and
	// ids, never through pins.
	Pin bool
	// PinRoot is the directory under which pin directories are made; empty
	// means DefaultPinRoot. It must be on a bpf filesystem; when it is
	// under /sys/fs/bpf and that is not mounted, Join mounts bpffs there.
	PinRoot string
	// HeartbeatInterval is how often a goroutine of the Program calls
	// Heartbeat (and every fourth time Sweep); zero means
	// DefaultHeartbeatInterval. Negative means no goroutine: the caller
	// calls Heartbeat at least every StaleAfter/2 (or its services go to
	// the kernel) and Sweep from time to time.
	HeartbeatInterval time.Duration
	// OnKeepaliveError, if set, receives the errors of that goroutine,
	// from that goroutine (ErrTakenOver among them).
	OnKeepaliveError func(error)
}

// Program is this server's handle on the steering program of one
// interface: the one program and its maps that every zerohop server on the
// interface shares, and this server's slot in them. The embedded Maps read
// counters, list services and edit the ACL of the whole interface;
// AddService, SetSocket and their inverses act on this server's slot only.
//
// The attachment is a bpf_link that every server holds a descriptor of:
// it lives while any of them runs and the kernel detaches the program when
// the last one exits, by Close or by SIGKILL alike.
type Program struct {
	*Maps
	prog    *ebpf.Program
	link    link.Link // nil for a program loaded for test runs only
	mode    Mode
	loaded  bool // this process loaded and attached the program
	progID  uint32
	linkID  uint32
	ifindex int

	ns     *netns
	probe  *prober
	slot   int
	slotFD int // holds the slot's lock for the life of the Program
	token  uint64
	pid    uint32

	ownMu   sync.Mutex // guards own and sockets
	own     map[steerServiceKey]Service
	sockets map[int]bool

	pinDir string

	onError   func(error)
	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// errRetry marks a join attempt that lost a race with another server
// (attaching at the same moment, or the last holder leaving): try again.
var errRetry = errors.New("the interface's XDP program changed meanwhile")

// joinAttempts bounds the retries of Join; each lost race means another
// server made progress, so a few dozen always suffice.
const joinAttempts = 50

// Join attaches the steering program to the interface named iface (in the
// calling thread's network namespace) or, when a zerohop program of this
// ABI version is attached already, joins it; then claims a slot for this
// server. It fails with ErrForeign naming the program when another XDP
// program is attached (it never replaces one), with ErrIncompatible when a
// zerohop program of another ABI version is, and with ErrFull when all
// MaxSlots slots are taken.
func Join(iface string, opts Options) (*Program, error) {
	fail := func(err error) (*Program, error) {
		return nil, &Error{Op: "join", Iface: iface, Err: err}
	}
	if opts.Mode < ModeAuto || opts.Mode > ModeGeneric {
		return fail(fmt.Errorf("%w: mode %v", ErrInvalid, opts.Mode))
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrNotFound, err))
	}
	spec, err := newSpec()
	if err != nil {
		return fail(err)
	}
	var p *Program
	for attempt := 0; ; attempt++ {
		p, err = joinOnce(ifc, spec, opts.Mode)
		if err == nil {
			break
		}
		if !errors.Is(err, errRetry) {
			return fail(err)
		}
		if attempt == joinAttempts {
			return fail(fmt.Errorf("%w: gave up after %d attempts: %w", ErrBusy, attempt, err))
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	if err := p.start(opts); err != nil {
		p.Close()
		return fail(err)
	}
	return p, nil
}

// Attach is Join, under the name of the single-server API it replaces.
//
// Deprecated: use Join.
func Attach(iface string, opts Options) (*Program, error) { return Join(iface, opts) }

// joinOnce makes one attempt: attach when nothing is attached, join what is.
func joinOnce(ifc *net.Interface, spec *ebpf.CollectionSpec, mode Mode) (*Program, error) {
	st, err := queryXDP(ifc.Index)
	if err != nil {
		return nil, err
	}
	if st.progID == 0 {
		return attachNew(ifc, spec, mode)
	}
	return joinAttached(ifc, spec, st)
}

// attachNew loads the program and attaches it through a bpf_link.
func attachNew(ifc *net.Interface, spec *ebpf.CollectionSpec, mode Mode) (*Program, error) {
	p, err := loadProgram(ifc.Name, spec)
	if err != nil {
		return nil, err
	}
	modes := []Mode{mode}
	if mode == ModeAuto {
		modes = []Mode{ModeNative, ModeGeneric}
	}
	var errs []error
	for _, m := range modes {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifc.Index, Flags: m.flags()})
		if err == nil {
			p.link, p.mode = l, m
			break
		}
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			// Another program got there first (a server starting
			// at the same moment): join it instead.
			p.Close()
			return nil, fmt.Errorf("%w: %v mode: %w", errRetry, m, err)
		}
		errs = append(errs, fmt.Errorf("%v mode: %w", m, err))
	}
	if p.link == nil {
		p.Close()
		return nil, fmt.Errorf("%w: %w", ErrNotSupported, errors.Join(errs...))
	}
	p.loaded = true
	p.ifindex = ifc.Index
	if info, err := p.link.Info(); err == nil {
		p.linkID = uint32(info.ID)
	}
	return p, nil
}

// loadProgram loads the program and its maps without attaching them.
func loadProgram(iface string, spec *ebpf.CollectionSpec) (*Program, error) {
	var objs steerObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading the XDP program (verifier log follows; needs CAP_BPF and CAP_NET_ADMIN): %+v", verr)
		}
		return nil, fmt.Errorf("loading the XDP program and maps (needs CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	if err := objs.Meta.Freeze(); err != nil {
		objs.Close()
		return nil, fmt.Errorf("freezing the meta map: %w", err)
	}
	p := newProgram(iface, objs.ZerohopSteer, &objs.steerMaps)
	if info, err := p.prog.Info(); err == nil {
		if id, ok := info.ID(); ok {
			p.progID = uint32(id)
		}
	}
	return p, nil
}

func newProgram(iface string, prog *ebpf.Program, maps *steerMaps) *Program {
	leak.Track(prog.FD())
	return &Program{Maps: newMaps(iface, maps), prog: prog, slot: -1, slotFD: -1,
		own: map[steerServiceKey]Service{}, sockets: map[int]bool{}}
}

// joinAttached takes a handle on the program rtnetlink reported, after
// checking that it is ours and of our ABI, and a descriptor of its link.
func joinAttached(ifc *net.Interface, spec *ebpf.CollectionSpec, st xdpState) (_ *Program, err error) {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(st.progID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: program %d is gone", errRetry, st.progID)
	}
	if err != nil {
		return nil, fmt.Errorf("opening XDP program %d (needs CAP_SYS_ADMIN): %w", st.progID, err)
	}
	maps := map[string]*ebpf.Map{}
	defer func() {
		if err != nil {
			prog.Close()
			for _, m := range maps {
				m.Close()
			}
		}
	}()
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("reading XDP program %d: %w", st.progID, err)
	}
	if info.Name != progName {
		return nil, fmt.Errorf("%w (%w): %q (id %d, %s mode) is attached to %s; zerohop never replaces another XDP program: detach it (ip link set dev %s xdp off) or serve on another interface",
			ErrForeign, ErrBusy, info.Name, st.progID, st.modeString(), ifc.Name, ifc.Name)
	}
	if err := openMapsOf(info, maps); err != nil {
		return nil, err
	}
	if err := checkMaps(spec, maps); err != nil {
		return nil, fmt.Errorf("%w (%w): zerohop program id %d on %s (%s mode): %w", ErrIncompatible, ErrBusy, st.progID, ifc.Name, st.modeString(), err)
	}
	l, err := findXDPLink(st.progID, ifc.Index)
	if err != nil {
		return nil, err
	}
	if l == nil {
		// No link: gone meanwhile, or attached through netlink, whose
		// attachment no descriptor keeps alive.
		if now, qerr := queryXDP(ifc.Index); qerr == nil && now.progID == st.progID {
			return nil, fmt.Errorf("%w (%w): zerohop program id %d is attached to %s without a bpf_link (by ip link?), so its lifetime cannot be shared: detach it (ip link set dev %s xdp off)",
				ErrIncompatible, ErrBusy, st.progID, ifc.Name, ifc.Name)
		}
		return nil, fmt.Errorf("%w: the link of program %d is gone", errRetry, st.progID)
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	// Holding the link keeps the program attached from now on; make sure
	// it still was when we took it (the last holder may have left just
	// before, and a new program been attached).
	if now, qerr := queryXDP(ifc.Index); qerr != nil || now.progID != st.progID {
		return nil, fmt.Errorf("%w: program %d was detached while joining", errRetry, st.progID)
	}
	p := newProgram(ifc.Name, prog, mapsOf(maps))
	p.link, p.mode, p.progID, p.ifindex = l, st.mode, st.progID, ifc.Index
	if linfo, err := l.Info(); err == nil {
		p.linkID = uint32(linfo.ID)
	}
	return p, nil
}

// openMapsOf opens the maps a program uses, by id, keyed by name.
func openMapsOf(info *ebpf.ProgramInfo, out map[string]*ebpf.Map) error {
	ids, ok := info.MapIDs()
	if !ok {
		return fmt.Errorf("%w: the kernel does not list the program's maps", ErrNotSupported)
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: map %d is gone", errRetry, id)
		}
		if err != nil {
			return fmt.Errorf("opening map %d (needs CAP_SYS_ADMIN): %w", id, err)
		}
		mi, err := m.Info()
		if err != nil || out[mi.Name] != nil || !slices.Contains(mapNames, mi.Name) {
			m.Close() // not one the ABI names: never used
			continue
		}
		out[mi.Name] = m
	}
	return nil
}

// checkMaps verifies that maps hold every map of the ABI, each of the shape
// spec gives it, and a meta map that names this ABI version.
func checkMaps(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map) error {
	if maps[steerMapMeta] == nil {
		return errors.New("it has no meta map (a zerohop of ABI version 1, before shared programs?)")
	}
	if err := checkMeta(maps[steerMapMeta]); err != nil {
		return err
	}
	for _, name := range mapNames {
		m := maps[name]
		if m == nil {
			return fmt.Errorf("it has no %s map", name)
		}
		if err := spec.Maps[name].Compatible(m); err != nil {
			return fmt.Errorf("its %s map differs: %w", name, err)
		}
	}
	return nil
}

func mapsOf(maps map[string]*ebpf.Map) *steerMaps {
	return &steerMaps{
		Xsks: maps[steerMapXsks], Services: maps[steerMapServices], Slots: maps[steerMapSlots],
		SlotCounters: maps[steerMapSlotCounters], Meta: maps[steerMapMeta], Acl: maps[steerMapAcl], AclHits: maps[steerMapAclHits],
		Counters: maps[steerMapCounters], Settings: maps[steerMapSettings],
	}
}

// findXDPLink returns the XDP link of program progID on ifindex, or nil.
func findXDPLink(progID uint32, ifindex int) (link.Link, error) {
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		if info.Type != link.XDPType || uint32(info.Program) != progID {
			continue
		}
		if x := info.XDP(); x != nil && int(x.Ifindex) == ifindex {
			return it.Take(), nil
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing BPF links (needs CAP_SYS_ADMIN): %w", err)
	}
	return nil, nil
}

// start claims a slot, pins and starts the keepalive.
func (p *Program) start(opts Options) error {
	var err error
	if p.ns, err = currentNetns(); err != nil {
		return err
	}
	if p.probe, err = p.ns.newProber(); err != nil {
		return err
	}
	var b [8]byte
	for p.token == 0 {
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("owner token: %w", err)
		}
		p.token = binary.NativeEndian.Uint64(b[:])
	}
	p.pid = uint32(os.Getpid())
	if err := p.claimSlot(); err != nil {
		return err
	}
	if opts.Pin {
		root := opts.PinRoot
		if root == "" {
			root = DefaultPinRoot
		}
		if err := p.pin(root); err != nil {
			return err
		}
	}
	interval := opts.HeartbeatInterval
	if interval == 0 {
		interval = DefaultHeartbeatInterval
	}
	if interval > 0 {
		p.onError = opts.OnKeepaliveError
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.keepalive(interval)
	}
	return nil
}

// keepalive heartbeats and, every sweepEvery beats, sweeps.
func (p *Program) keepalive(interval time.Duration) {
	defer close(p.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		err := p.Heartbeat()
		if n%sweepEvery == 0 {
			_, serr := p.Sweep()
			err = errors.Join(err, serr)
		}
		if err != nil && p.onError != nil && !errors.Is(err, ErrClosed) {
			p.onError(err)
		}
	}
}

// Mode is the mode the program runs in: ModeNative or ModeGeneric (ModeAuto
// when it runs in several, which only hardware offload allows).
func (p *Program) Mode() Mode { return p.mode }

// Iface is the name of the interface the program is attached to.
func (p *Program) Iface() string { return p.iface }

// ID is the kernel's id of the shared program.
func (p *Program) ID() uint32 { return p.progID }

// LinkID is the id of the bpf_link that attaches it.
func (p *Program) LinkID() uint32 { return p.linkID }

// Slot is this server's slot: the index its services and sockets carry.
func (p *Program) Slot() int { return p.slot }

// Loaded reports whether this server loaded and attached the program
// (false: it joined one another server attached).
func (p *Program) Loaded() bool { return p.loaded }

// PinDir is the directory holding the pinned maps, or "" when not pinned.
func (p *Program) PinDir() string { return p.pinDir }

// Close withdraws this server's services first, so nothing more is
// steered to its sockets, removes its sockets, frees its slot, unpins the
// maps when it pinned them and is the last server, and releases its
// descriptors; when no other server holds the link, the kernel detaches the
// program. Closing twice returns the first result.
func (p *Program) Close() error {
	p.closeOnce.Do(func() {
		if p.stop != nil {
			close(p.stop)
			<-p.stopped
		}
		var errs []error
		if p.slot >= 0 {
			errs = append(errs, p.leave())
		}
		if p.pinDir != "" {
			errs = append(errs, p.unpinIfLast())
		}
		unlock(p.slotFD)
		p.probe.close()
		p.ns.close()
		leak.Untrack(p.prog.FD())
		errs = append(errs, p.prog.Close())
		errs = append(errs, p.Maps.Close())
		if p.link != nil {
			errs = append(errs, p.link.Close())
		}
		if err := errors.Join(errs...); err != nil {
			p.closeErr = &Error{Op: "close", Iface: p.iface, Err: err}
		}
	})
	return p.closeErr
}

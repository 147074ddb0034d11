package bpf

import (
	"errors"
	"fmt"
	"net"
	"sync"

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

// Options configure Attach. The zero value attaches in the best mode and
// pins nothing.
type Options struct {
	// Mode forces an attach mode; ModeAuto (zero) tries native first.
	Mode Mode
	// Pin pins the maps under PinRoot/<iface>/ so that other processes
	// (the CLI) can read counters and edit ACLs; Close unpins them.
	Pin bool
	// PinRoot is the directory under which pin directories are made; empty
	// means DefaultPinRoot. It must be on a bpf filesystem; when it is
	// under /sys/fs/bpf and that is not mounted, Attach mounts bpffs there.
	PinRoot string
}

// Program is the steering program loaded and attached to one interface
// through a bpf_link: when the process exits, even by SIGKILL, the kernel
// detaches it. The embedded Maps edit services, ACL rules and sockets.
type Program struct {
	*Maps
	prog   *ebpf.Program
	link   link.Link
	mode   Mode
	pinDir string

	closeOnce sync.Once
	closeErr  error
}

// Attach loads the program and its maps and attaches it to the interface
// named iface in the calling thread's network namespace.
func Attach(iface string, opts Options) (*Program, error) {
	fail := func(err error) (*Program, error) {
		return nil, &Error{Op: "attach", Iface: iface, Err: err}
	}
	if opts.Mode < ModeAuto || opts.Mode > ModeGeneric {
		return fail(fmt.Errorf("%w: mode %v", ErrInvalid, opts.Mode))
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrNotFound, err))
	}
	p, err := load(iface)
	if err != nil {
		return fail(err)
	}
	modes := []Mode{opts.Mode}
	if opts.Mode == ModeAuto {
		modes = []Mode{ModeNative, ModeGeneric}
	}
	var errs []error
	for _, mode := range modes {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifc.Index, Flags: mode.flags()})
		if err == nil {
			p.link, p.mode = l, mode
			break
		}
		errs = append(errs, fmt.Errorf("%v mode: %w", mode, err))
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			p.Close()
			return fail(fmt.Errorf("%w: an XDP program is already attached: %w", ErrBusy, errors.Join(errs...)))
		}
	}
	if p.link == nil {
		p.Close()
		return fail(fmt.Errorf("%w: %w", ErrNotSupported, errors.Join(errs...)))
	}
	if opts.Pin {
		root := opts.PinRoot
		if root == "" {
			root = DefaultPinRoot
		}
		if err := p.pin(root); err != nil {
			p.Close()
			return fail(err)
		}
	}
	return p, nil
}

// load loads the program and its maps without attaching them.
func load(iface string) (*Program, error) {
	var objs steerObjects
	if err := loadSteerObjects(&objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading the XDP program (verifier log follows; needs CAP_BPF and CAP_NET_ADMIN): %+v", verr)
		}
		return nil, fmt.Errorf("loading the XDP program and maps (needs CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	p := &Program{Maps: newMaps(iface, &objs.steerMaps), prog: objs.ZerohopSteer}
	leak.Track(p.prog.FD())
	return p, nil
}

// Mode is the mode the program was attached in: ModeNative or ModeGeneric.
func (p *Program) Mode() Mode { return p.mode }

// Iface is the name of the interface the program is attached to.
func (p *Program) Iface() string { return p.iface }

// PinDir is the directory holding the pinned maps, or "" when not pinned.
func (p *Program) PinDir() string { return p.pinDir }

// Close detaches the program, unpins the maps and releases everything, in
// reverse order of setup. Closing twice returns the first result.
func (p *Program) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.link != nil {
			errs = append(errs, p.link.Close())
		}
		if p.pinDir != "" {
			errs = append(errs, p.unpin())
		}
		leak.Untrack(p.prog.FD())
		errs = append(errs, p.prog.Close())
		errs = append(errs, p.Maps.Close())
		if err := errors.Join(errs...); err != nil {
			p.closeErr = &Error{Op: "close", Iface: p.iface, Err: err}
		}
	})
	return p.closeErr
}

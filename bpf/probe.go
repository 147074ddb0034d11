package bpf

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachProbe is what ProbeAttach found for each XDP mode: nil when the
// program attached in that mode, otherwise why not. An error wrapping
// ErrBusy means the interface holds an XDP program already (a zerohop
// server's shared program, or a foreign one), so the mode could not be
// tried: inconclusive, not a "no".
type AttachProbe struct {
	Native, Generic error
}

// ProbeAttach tries to attach a fresh copy of the steering program to the
// interface named iface (in the calling thread's network namespace) in
// native mode and then in generic mode, detaching it again right after each
// attach. It never joins or disturbs a program that is attached already:
// then both modes report ErrBusy, naming what is attached. The brief
// attach passes everything (no service is registered in the fresh copy).
// The error is non-nil only when the interface does not exist (ErrNotFound).
func ProbeAttach(iface string) (AttachProbe, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return AttachProbe{}, &Error{Op: "probe attach", Iface: iface, Err: fmt.Errorf("%w: %w", ErrNotFound, err)}
	}
	spec, err := newSpec()
	if err != nil {
		return AttachProbe{Native: err, Generic: err}, nil
	}
	try := func(mode Mode) error {
		fail := func(err error) error { return &Error{Op: "probe attach " + mode.String(), Iface: iface, Err: err} }
		if st, err := queryXDP(ifc.Index); err != nil {
			return fail(err)
		} else if st.progID != 0 {
			return fail(fmt.Errorf("%w: program id %d is attached in %s mode", ErrBusy, st.progID, st.modeString()))
		}
		p, err := loadProgram(iface, spec)
		if err != nil {
			return fail(err)
		}
		defer p.Close()
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifc.Index, Flags: mode.flags()})
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return fail(fmt.Errorf("%w: an XDP program was attached meanwhile: %w", ErrBusy, err))
		}
		if err != nil {
			return fail(fmt.Errorf("%w: %w", ErrNotSupported, err))
		}
		return l.Close()
	}
	return AttachProbe{Native: try(ModeNative), Generic: try(ModeGeneric)}, nil
}

package bpf

import (
	"fmt"
	"net"
)

// AttachProbe is what ProbeAttach found for each XDP mode: nil when the
// program attached in that mode, otherwise why not. An error wrapping
// ErrBusy means the interface holds an XDP program already (it is in use),
// so the mode could not be tried: inconclusive, not a "no".
type AttachProbe struct {
	Native, Generic error
}

// ProbeAttach tries to attach the steering program to the interface named
// iface (in the calling thread's network namespace) in native mode and then
// in generic mode, detaching it again right after each attach.
//
// It briefly attaches a program that passes everything not matching a
// service (and no service is registered), so traffic is not disturbed, but
// it must not run while a server holds the interface: the attach then fails
// with ErrBusy and both modes are reported as in use. The error is non-nil
// only when the interface does not exist (ErrNotFound).
func ProbeAttach(iface string) (AttachProbe, error) {
	if _, err := net.InterfaceByName(iface); err != nil {
		return AttachProbe{}, &Error{Op: "probe attach", Iface: iface, Err: fmt.Errorf("%w: %w", ErrNotFound, err)}
	}
	try := func(mode Mode) error {
		p, err := Attach(iface, Options{Mode: mode})
		if err != nil {
			return err
		}
		return p.Close()
	}
	return AttachProbe{Native: try(ModeNative), Generic: try(ModeGeneric)}, nil
}

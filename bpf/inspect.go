package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/cilium/ebpf"
)

// Attachment is what is attached to an interface's XDP hook, as Inspect
// found it.
type Attachment struct {
	Iface string
	// ProgramID is 0 when nothing is attached.
	ProgramID uint32
	// Name is the program's name; "zerohop_steer" for zerohop's.
	Name string
	// Mode is "native", "generic", "offload", "several modes" or "none".
	Mode string
	// Zerohop: the program is zerohop's steering program of this ABI
	// version, which a server can join. Otherwise Err says why not
	// (ErrForeign, ErrIncompatible) when something is attached.
	Zerohop bool
	Err     error
	// LinkID is the bpf_link that attaches it (0: none found).
	LinkID uint32
	// For a zerohop program: its servers, their services and the
	// counters.
	Slots    []SlotInfo
	Services []Service
	Counters Counters
}

// Inspect reports what is attached to the XDP hook of the interface named
// iface (in the calling thread's network namespace), without joining or
// changing it. It needs CAP_SYS_ADMIN to open programs and maps by id. The
// error is for failures to look (no such interface, no permission); what
// keeps the program from being joined is in Attachment.Err.
func Inspect(iface string) (Attachment, error) {
	a := Attachment{Iface: iface, Mode: "none"}
	fail := func(err error) (Attachment, error) { return a, &Error{Op: "inspect", Iface: iface, Err: err} }
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrNotFound, err))
	}
	st, err := queryXDP(ifc.Index)
	if err != nil {
		return fail(err)
	}
	a.ProgramID, a.Mode = st.progID, st.modeString()
	if st.progID == 0 {
		return a, nil
	}
	m, name, err := openAttached(ifc, st)
	a.Name = name
	if err != nil {
		if errors.Is(err, ErrForeign) || errors.Is(err, ErrIncompatible) {
			a.Err = err
			return a, nil
		}
		return fail(err)
	}
	defer m.Close()
	a.Zerohop = true
	if l, err := findXDPLink(st.progID, ifc.Index); err == nil && l != nil {
		if info, err := l.Info(); err == nil {
			a.LinkID = uint32(info.ID)
		}
		l.Close()
	}
	if a.Slots, err = m.Slots(); err != nil {
		return fail(err)
	}
	if a.Services, err = m.Services(); err != nil {
		return fail(err)
	}
	if a.Counters, err = m.Counters(); err != nil {
		return fail(err)
	}
	return a, nil
}

// OpenAttached opens the maps of the zerohop program attached to the
// interface named iface (in the calling thread's network namespace),
// found through the interface and ids, so a process of any mount
// namespace (the CLI) can read counters and services and edit the ACL. It
// holds no slot and does not keep the program attached. It fails with
// ErrNotFound when nothing is attached, ErrForeign or ErrIncompatible.
func OpenAttached(iface string) (*Maps, error) {
	fail := func(err error) (*Maps, error) { return nil, &Error{Op: "open attached", Iface: iface, Err: err} }
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrNotFound, err))
	}
	st, err := queryXDP(ifc.Index)
	if err != nil {
		return fail(err)
	}
	if st.progID == 0 {
		return fail(fmt.Errorf("%w: no XDP program is attached", ErrNotFound))
	}
	m, _, err := openAttached(ifc, st)
	if err != nil {
		return fail(err)
	}
	return m, nil
}

// openAttached opens and checks the maps of the program rtnetlink named;
// it returns the program's name whenever it could read it.
func openAttached(ifc *net.Interface, st xdpState) (*Maps, string, error) {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(st.progID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: program %d was detached meanwhile", ErrNotFound, st.progID)
	}
	if err != nil {
		return nil, "", fmt.Errorf("opening XDP program %d (needs CAP_SYS_ADMIN): %w", st.progID, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return nil, "", fmt.Errorf("reading XDP program %d: %w", st.progID, err)
	}
	if info.Name != progName {
		return nil, info.Name, fmt.Errorf("%w: %q (id %d, %s mode)", ErrForeign, info.Name, st.progID, st.modeString())
	}
	maps := map[string]*ebpf.Map{}
	closeAll := func() {
		for _, m := range maps {
			m.Close()
		}
	}
	if err := openMapsOf(info, maps); err != nil {
		closeAll()
		return nil, info.Name, err
	}
	spec, err := newSpec()
	if err != nil {
		closeAll()
		return nil, info.Name, err
	}
	if err := checkMaps(spec, maps); err != nil {
		closeAll()
		return nil, info.Name, fmt.Errorf("%w: zerohop program id %d (%s mode): %w", ErrIncompatible, st.progID, st.modeString(), err)
	}
	return newMaps(ifc.Name, mapsOf(maps)), info.Name, nil
}

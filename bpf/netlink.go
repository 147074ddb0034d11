package bpf

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// xdpState is what rtnetlink says is attached to an interface's XDP hook.
type xdpState struct {
	progID uint32 // 0: nothing attached
	mode   Mode   // ModeNative, ModeGeneric; ModeAuto for offload or several
	raw    uint8  // IFLA_XDP_ATTACHED
}

// XDP_ATTACHED_* of linux/if_link.h (not in x/sys/unix).
const (
	xdpAttachedNone  = 0
	xdpAttachedDrv   = 1
	xdpAttachedSkb   = 2
	xdpAttachedHw    = 3
	xdpAttachedMulti = 4
)

func (s xdpState) modeString() string {
	switch s.raw {
	case xdpAttachedDrv:
		return "native"
	case xdpAttachedSkb:
		return "generic"
	case xdpAttachedHw:
		return "offload"
	case xdpAttachedMulti:
		return "several modes"
	}
	return "none"
}

// queryXDP asks rtnetlink (in the calling thread's network namespace) which
// XDP program is attached to the interface with index ifindex. It is the one
// view that covers every way of attaching (bpf_link or netlink) and is
// scoped to the namespace, unlike the global list of BPF links, whose
// ifindex could name an interface of any namespace.
func queryXDP(ifindex int) (xdpState, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return xdpState{}, fmt.Errorf("rtnetlink: listing links: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return xdpState{}, fmt.Errorf("rtnetlink: parsing the link dump: %w", err)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		// struct ifinfomsg: family u8, pad u8, type u16, index s32, ...
		if int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))) != ifindex {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return xdpState{}, fmt.Errorf("rtnetlink: parsing link %d: %w", ifindex, err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED == unix.IFLA_XDP {
				return parseXDPAttr(a.Value), nil
			}
		}
		return xdpState{}, nil // a kernel without IFLA_XDP has no XDP
	}
	return xdpState{}, fmt.Errorf("rtnetlink: no link with index %d in this network namespace: %w", ifindex, ErrNotFound)
}

// parseXDPAttr reads the attributes nested in IFLA_XDP.
func parseXDPAttr(b []byte) xdpState {
	var s xdpState
	var drv, skb, hw uint32
	for len(b) >= unix.SizeofRtAttr {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) &^ unix.NLA_F_NESTED
		if n < unix.SizeofRtAttr || n > len(b) {
			break
		}
		v := b[unix.SizeofRtAttr:n]
		switch {
		case typ == unix.IFLA_XDP_ATTACHED && len(v) >= 1:
			s.raw = v[0]
		case typ == unix.IFLA_XDP_PROG_ID && len(v) >= 4:
			s.progID = binary.NativeEndian.Uint32(v)
		case typ == unix.IFLA_XDP_DRV_PROG_ID && len(v) >= 4:
			drv = binary.NativeEndian.Uint32(v)
		case typ == unix.IFLA_XDP_SKB_PROG_ID && len(v) >= 4:
			skb = binary.NativeEndian.Uint32(v)
		case typ == unix.IFLA_XDP_HW_PROG_ID && len(v) >= 4:
			hw = binary.NativeEndian.Uint32(v)
		}
		b = b[min(len(b), (n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	switch s.raw {
	case xdpAttachedDrv:
		s.mode = ModeNative
	case xdpAttachedSkb:
		s.mode = ModeGeneric
	case xdpAttachedMulti:
		// Several modes at once (only possible with offload): report the
		// one that runs first in software.
		for _, id := range []uint32{hw, skb, drv} {
			if id != 0 {
				s.progID = id
			}
		}
	}
	return s
}

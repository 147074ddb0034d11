package bpf

import (
	"context"
	"errors"
	"testing"

	"github.com/zerohop/zerohop/internal/topo"
)

func TestAttachNativeOnVeth(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	p := attach(t, link, Options{})
	t.Logf("XDP mode on veth: %v", p.Mode())
	if p.Mode() != ModeNative {
		t.Fatalf("Mode() = %v, want native (veth supports driver mode)", p.Mode())
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdp" {
		t.Fatalf("ip link shows %q, want xdp:\n%s", got, ipLinkShow(t, link.A.Host, link.A.Iface))
	}
	if !p.Loaded() || p.ID() == 0 || p.LinkID() == 0 || p.Slot() != 0 {
		t.Fatalf("first server: loaded %v, program %d, link %d, slot %d; want it loaded, ids set, slot 0",
			p.Loaded(), p.ID(), p.LinkID(), p.Slot())
	}
	// A second server of the same process joins the same program and
	// link in a slot of its own; closing it leaves the program attached.
	var p2 *Program
	if err := link.A.Host.Do(func() (err error) {
		p2, err = Join(link.A.Iface, Options{})
		return err
	}); err != nil {
		t.Fatalf("second Join: %v", err)
	}
	if p2.Loaded() || p2.ID() != p.ID() || p2.LinkID() != p.LinkID() || p2.Slot() == p.Slot() || p2.Mode() != ModeNative {
		t.Fatalf("second server: loaded %v, program %d, link %d, slot %d, mode %v; want it joined to %d/%d in another slot than %d, native",
			p2.Loaded(), p2.ID(), p2.LinkID(), p2.Slot(), p2.Mode(), p.ID(), p.LinkID(), p.Slot())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdp" {
		t.Fatalf("after the first server closed ip link shows %q, want xdp (the second holds the link)", got)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "" {
		t.Fatalf("after Close ip link still shows %q", got)
	}
	if _, err := p.Counters(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Counters after Close: %v, want ErrClosed", err)
	}
}

func TestAttachGeneric(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	p := attach(t, link, Options{Mode: ModeGeneric})
	if p.Mode() != ModeGeneric {
		t.Fatalf("Mode() = %v, want generic", p.Mode())
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdpgeneric" {
		t.Fatalf("ip link shows %q, want xdpgeneric", got)
	}
}

// Loopback has no driver XDP: auto mode must fall back to generic and
// forced native mode must fail with ErrNotSupported.
func TestAttachFallsBackToGeneric(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	loopback := "lo"
	err := link.A.Host.Do(func() error {
		p, err := Attach(loopback, Options{Mode: ModeNative})
		if err == nil {
			p.Close()
			t.Errorf("native attach on a loopback interface succeeded")
		} else if !errors.Is(err, ErrNotSupported) {
			t.Errorf("native attach on loopback: %v, want ErrNotSupported", err)
		}
		p, err = Attach(loopback, Options{})
		if err != nil {
			return err
		}
		defer p.Close()
		if p.Mode() != ModeGeneric {
			t.Errorf("auto mode on loopback gave %v, want generic", p.Mode())
		}
		if got := xdpShown(t, link.A.Host, loopback); got != "xdpgeneric" {
			t.Errorf("ip link shows %q, want xdpgeneric", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAttachUnknownInterface(t *testing.T) {
	topo.RequireRoot(t)
	_, err := Attach("zh-no-such-if", Options{})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Attach on a missing interface: %v, want ErrNotFound", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Op != "join" || e.Iface != "zh-no-such-if" {
		t.Fatalf("error %#v does not name the operation and interface", err)
	}
}

var _ = context.Background

package bpf

import (
	"errors"
	"fmt"
	"testing"

	"github.com/zerohop/zerohop/internal/topo"
)

// On veth both modes attach; while a program holds the interface both are
// reported busy; a missing interface is an error. The probe leaves nothing
// attached: a real Attach succeeds right after it.
func TestProbeAttach(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	err := link.A.Host.Do(func() error {
		got, err := ProbeAttach(link.A.Iface)
		if err != nil {
			return err
		}
		if got.Native != nil || got.Generic != nil {
			t.Errorf("ProbeAttach on veth = %+v, want both modes nil", got)
		}

		p, err := Attach(link.A.Iface, Options{})
		if err != nil {
			return fmt.Errorf("attach after the probe: %w", err)
		}
		busy, err := ProbeAttach(link.A.Iface)
		if cerr := p.Close(); cerr != nil {
			t.Error(cerr)
		}
		if err != nil {
			return err
		}
		if !errors.Is(busy.Native, ErrBusy) || !errors.Is(busy.Generic, ErrBusy) {
			t.Errorf("ProbeAttach with a program attached = %+v, want ErrBusy for both modes", busy)
		}

		if _, err := ProbeAttach("zh-no-such-if"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ProbeAttach on a missing interface: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

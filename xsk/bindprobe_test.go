package xsk_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/xsk"
)

// veth binds in copy mode only.
func TestProbeBind(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	err := link.A.Host.Do(func() error {
		zeroCopy, err := xsk.ProbeBind(link.A.Ifindex, 0)
		if err != nil || zeroCopy {
			t.Errorf("ProbeBind on veth queue 0 = %v, %v; want copy mode only (false, nil)", zeroCopy, err)
		}
		// Probing twice in a row rebinds the queue the first probe just
		// released (Open retries the EBUSY that follows a close).
		if _, err := xsk.ProbeBind(link.A.Ifindex, 0); err != nil {
			t.Errorf("second ProbeBind: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A queue the device does not have and an interface that does not exist
// are errors naming the kernel's answer.
func TestProbeBindErrors(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	err := link.A.Host.Do(func() error {
		if _, err := xsk.ProbeBind(link.A.Ifindex, 7); !errors.Is(err, unix.EINVAL) {
			t.Errorf("ProbeBind on queue 7 of a one-queue veth: %v, want EINVAL", err)
		}
		if _, err := xsk.ProbeBind(1<<20, 0); !errors.Is(err, unix.ENODEV) {
			t.Errorf("ProbeBind on a missing ifindex: %v, want ENODEV", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package runtime

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// pinThread pins the calling OS thread (locked by the caller) to core.
func pinThread(core int) error {
	var set unix.CPUSet
	set.Set(core)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("runtime: pinning loop thread to core %d: %w", core, err)
	}
	return nil
}

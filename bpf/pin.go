package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// DefaultPinRoot is where Attach pins maps when Options.Pin is set: one
// directory per interface name.
const DefaultPinRoot = "/sys/fs/bpf/zerohop"

const bpffsMount = "/sys/fs/bpf"

// mountMu serialises the check-then-mount of bpffs: two concurrent mounts
// would stack, and the lower one's pins would vanish from view.
var mountMu sync.Mutex

// PinDir is the directory under which maps of the program on iface are
// pinned with the default root.
func PinDir(iface string) string { return filepath.Join(DefaultPinRoot, iface) }

// pin pins every map under root/<iface>. Pins of these very maps (made by
// another server of the interface in this mount namespace) are kept; pins
// left by a crashed process (whose program is gone) are replaced; pins
// whose maps another loaded program still uses give ErrBusy.
func (p *Program) pin(root string) error {
	if p.iface == "" || strings.ContainsAny(p.iface, "/") || p.iface == "." || p.iface == ".." {
		return fmt.Errorf("pin: %w: interface name %q", ErrInvalid, p.iface)
	}
	if err := ensureBPFFS(root); err != nil {
		return err
	}
	dir := filepath.Join(root, p.iface)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin: creating %s: %w", dir, err)
	}
	ours := map[ebpf.MapID]bool{}
	for _, m := range p.named() {
		if info, err := m.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ours[id] = true
			}
		}
	}
	if err := removeStalePins(dir, ours); err != nil {
		return err
	}
	p.pinDir = dir
	for name, m := range p.named() {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			continue // ours already, pinned by another server
		}
		if err := m.Pin(path); err != nil {
			return fmt.Errorf("pin: %s: %w", name, err)
		}
	}
	return nil
}

// unpinIfLast removes the pins and the directory unless another server of
// the interface is alive (it may be using them).
func (p *Program) unpinIfLast() error {
	if others, err := p.othersAlive(); err != nil || others {
		return err
	}
	var errs []error
	for name := range p.named() {
		if err := os.Remove(filepath.Join(p.pinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin: %w", err))
		}
	}
	if err := os.Remove(p.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unpin: %w", err))
	}
	return errors.Join(errs...)
}

// ensureBPFFS checks that root is on a bpf filesystem, mounting one at
// /sys/fs/bpf when root lies below it and nothing is mounted there.
func ensureBPFFS(root string) error {
	mountMu.Lock()
	defer mountMu.Unlock()
	var st unix.Statfs_t
	dir := root
	for {
		if err := unix.Statfs(dir, &st); err == nil {
			break
		} else if !errors.Is(err, unix.ENOENT) || dir == "/" {
			return fmt.Errorf("pin: statfs %s: %w", dir, err)
		}
		dir = filepath.Dir(dir)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if root != bpffsMount && !strings.HasPrefix(root, bpffsMount+"/") {
		return fmt.Errorf("pin: %w: %s is not on a bpf filesystem", ErrInvalid, root)
	}
	if err := unix.Mount("bpf", bpffsMount, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("pin: mounting bpffs at %s (try: mount -t bpf bpf %s): %w", bpffsMount, bpffsMount, err)
	}
	return nil
}

// removeStalePins removes the pins in dir that are not of the maps ours,
// unless a loaded program still uses one of those maps.
func removeStalePins(dir string, ours map[ebpf.MapID]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pin: reading %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	var inUse map[ebpf.MapID]bool
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
			info, infoErr := m.Info()
			m.Close()
			if infoErr == nil {
				if id, ok := info.ID(); ok {
					if ours[id] {
						continue
					}
					if inUse == nil {
						if inUse, err = mapIDsInUse(); err != nil {
							return err
						}
					}
					if inUse[id] {
						return fmt.Errorf("pin: %w: %s belongs to another loaded program (an interface of the same name in another network namespace?)", ErrBusy, path)
					}
				}
			}
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("pin: removing stale %s: %w", path, err)
		}
	}
	return nil
}

// mapIDsInUse returns the IDs of maps that loaded programs reference.
func mapIDsInUse() (map[ebpf.MapID]bool, error) {
	used := map[ebpf.MapID]bool{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return used, nil
		}
		if err != nil {
			return nil, fmt.Errorf("pin: listing programs: %w", err)
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := prog.Info()
		prog.Close()
		if err != nil {
			continue
		}
		if ids, ok := info.MapIDs(); ok {
			for _, mid := range ids {
				used[mid] = true
			}
		}
	}
}

// OpenPinned opens the maps that a running Program pinned in dir (for
// example PinDir(iface)), so another process of the same mount namespace
// can read counters and edit the ACL; OpenAttached finds them through the
// interface instead, from any mount namespace. Close releases the handles
// and leaves the pins.
func OpenPinned(dir string) (*Maps, error) {
	fail := func(err error) (*Maps, error) {
		return nil, &Error{Op: "open pinned", Iface: filepath.Base(dir), Err: err}
	}
	spec, err := newSpec()
	if err != nil {
		return fail(err)
	}
	loaded := map[string]*ebpf.Map{}
	closeAll := func() {
		for _, l := range loaded {
			l.Close()
		}
	}
	for _, name := range mapNames {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			closeAll()
			return fail(mapError(err))
		}
		loaded[name] = m
	}
	if err := checkMaps(spec, loaded); err != nil {
		closeAll()
		return fail(fmt.Errorf("%w: the maps in %s: %w", ErrIncompatible, dir, err))
	}
	return newMaps(filepath.Base(dir), mapsOf(loaded)), nil
}

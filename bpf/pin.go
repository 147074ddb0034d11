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

// pin pins every map under root/<iface>. Pins left by a crashed process
// (whose program is gone) are replaced; pins whose maps are still used by a
// loaded program give ErrBusy.
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
	if err := removeStalePins(dir); err != nil {
		return err
	}
	p.pinDir = dir
	for name, m := range p.named() {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin: %s: %w", name, err)
		}
	}
	return nil
}

// unpin removes the pins and the directory.
func (p *Program) unpin() error {
	var errs []error
	for _, m := range p.named() {
		errs = append(errs, m.Unpin())
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

// removeStalePins removes the pins in dir unless a loaded program still
// uses one of the maps.
func removeStalePins(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pin: reading %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	inUse, err := mapIDsInUse()
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
			info, infoErr := m.Info()
			m.Close()
			if infoErr == nil {
				if id, ok := info.ID(); ok && inUse[id] {
					return fmt.Errorf("pin: %w: %s belongs to a loaded program", ErrBusy, path)
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
// example PinDir(iface)), so another process can read counters and edit
// services and ACL rules. Close releases the handles and leaves the pins.
func OpenPinned(dir string) (*Maps, error) {
	fail := func(err error) (*Maps, error) {
		return nil, &Error{Op: "open pinned", Iface: filepath.Base(dir), Err: err}
	}
	spec, err := loadSteer()
	if err != nil {
		return fail(err)
	}
	var objs steerMaps
	loaded := map[string]*ebpf.Map{}
	for _, name := range []string{steerMapXsks, steerMapServices, steerMapAcl, steerMapCounters, steerMapSettings} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			for _, l := range loaded {
				l.Close()
			}
			return fail(mapError(err))
		}
		loaded[name] = m
		if want := spec.Maps[name]; want.Compatible(m) != nil {
			for _, l := range loaded {
				l.Close()
			}
			return fail(fmt.Errorf("%w: %s was pinned by an incompatible version: %w", ErrInvalid, name, want.Compatible(m)))
		}
	}
	objs.Xsks, objs.Services, objs.Acl = loaded[steerMapXsks], loaded[steerMapServices], loaded[steerMapAcl]
	objs.Counters, objs.Settings = loaded[steerMapCounters], loaded[steerMapSettings]
	return newMaps(filepath.Base(dir), &objs), nil
}

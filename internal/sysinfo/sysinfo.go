package sysinfo

import (
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Version is a kernel release as major.minor.patch.
type Version struct {
	Major, Minor, Patch int
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// Kernel returns the running kernel's version and its full release string
// (uname -r).
func Kernel() (Version, string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return Version{}, "", fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	v, err := ParseRelease(release)
	return v, release, err
}

// ParseRelease parses the leading "major.minor[.patch]" of a kernel release
// string such as "6.18.44-fc-v782".
func ParseRelease(release string) (Version, error) {
	var nums [3]int
	rest := release
	for i := range nums {
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if end == 0 {
			if i >= 2 {
				break
			}
			return Version{}, fmt.Errorf("parse kernel release %q: no number at field %d", release, i+1)
		}
		n, err := strconv.Atoi(rest[:end])
		if err != nil {
			return Version{}, fmt.Errorf("parse kernel release %q: %w", release, err)
		}
		nums[i] = n
		rest = rest[end:]
		if !strings.HasPrefix(rest, ".") {
			break
		}
		rest = rest[1:]
	}
	return Version{nums[0], nums[1], nums[2]}, nil
}

// Capability is a Linux capability number (unix.CAP_*).
type Capability int

// The capabilities zerohop cares about.
const (
	CapNetAdmin Capability = unix.CAP_NET_ADMIN
	CapNetRaw   Capability = unix.CAP_NET_RAW
	CapIPCLock  Capability = unix.CAP_IPC_LOCK
	CapSysAdmin Capability = unix.CAP_SYS_ADMIN
	CapBPF      Capability = unix.CAP_BPF
)

// Relevant lists the capabilities zerohop reports, in display order.
var Relevant = []Capability{CapNetAdmin, CapBPF, CapSysAdmin, CapNetRaw, CapIPCLock}

func (c Capability) String() string {
	switch c {
	case CapNetAdmin:
		return "CAP_NET_ADMIN"
	case CapNetRaw:
		return "CAP_NET_RAW"
	case CapIPCLock:
		return "CAP_IPC_LOCK"
	case CapSysAdmin:
		return "CAP_SYS_ADMIN"
	case CapBPF:
		return "CAP_BPF"
	}
	return "CAP_" + strconv.Itoa(int(c))
}

// CapSet is a set of capabilities (bit n = capability n).
type CapSet uint64

// Has reports whether c is in the set.
func (s CapSet) Has(c Capability) bool {
	return c >= 0 && c < 64 && s&(1<<uint(c)) != 0
}

// EffectiveCaps returns the calling thread's effective capability set.
func EffectiveCaps() (CapSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return CapSet(data[0].Effective) | CapSet(data[1].Effective)<<32, nil
}

// Unlimited is the value of an RLIMIT with no limit.
const Unlimited = ^uint64(0)

// MemlockLimit returns RLIMIT_MEMLOCK (soft and hard) in bytes; Unlimited
// means no limit.
func MemlockLimit() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, 0, fmt.Errorf("getrlimit(RLIMIT_MEMLOCK): %w", err)
	}
	return rl.Cur, rl.Max, nil
}

// BTFPath is where the kernel exposes its own BTF.
const BTFPath = "/sys/kernel/btf/vmlinux"

// HaveBTF reports whether the kernel exposes its BTF at BTFPath.
func HaveBTF() bool {
	_, err := os.Stat(BTFPath)
	return err == nil
}

// IoUringDisabledPath is the sysctl that gates io_uring (Linux 6.6+).
const IoUringDisabledPath = "/proc/sys/kernel/io_uring_disabled"

// IoUringDisabled returns kernel.io_uring_disabled: 0 allows io_uring for
// everyone, 1 only for members of kernel.io_uring_group and CAP_SYS_ADMIN,
// 2 for nobody. Kernels before 6.6 have no such sysctl; then the error
// satisfies errors.Is(err, fs.ErrNotExist) and io_uring is not gated.
func IoUringDisabled() (int, error) {
	return readIntFile(IoUringDisabledPath)
}

// SeccompMode returns the Seccomp field of /proc/self/status: 0 none,
// 1 strict, 2 filter. A filter may refuse io_uring syscalls with EPERM or
// ENOSYS (container runtimes' default profiles do).
func SeccompMode() (int, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read seccomp mode: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("read seccomp mode: %w", err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("read seccomp mode: no Seccomp line in /proc/self/status: %w", fs.ErrNotExist)
}

func readIntFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

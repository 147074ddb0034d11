// Package leak finds file descriptors and goroutines that a test binary
// leaves behind.
//
// Code that opens kernel objects (rings, sockets, BPF links) calls Track with
// the new descriptor and Untrack when it closes it. Tracking costs one atomic
// load while disabled, and the package does not import testing, so
// production code links it at no cost. A test binary enables tracking from
// TestMain through Main, which then records the opening stack of every
// tracked descriptor and, after the tests ran, fails the binary if any
// tracked descriptor is still open, printing the stack that opened it.
// Descriptors opened outside Track (by the Go runtime, os/exec, net) are
// reported by number and target only, and only when they were not open
// before the tests and are not the runtime's own.
package leak

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	enabled atomic.Bool
	mu      sync.Mutex
	opened  = map[int]string{} // fd → stack of the call that opened it
)

// Track records that fd was opened by the caller. It is a no-op unless a
// test binary enabled tracking through Main.
func Track(fd int) {
	if !enabled.Load() || fd < 0 {
		return
	}
	buf := make([]byte, 4096)
	buf = buf[:runtime.Stack(buf, false)]
	mu.Lock()
	opened[fd] = string(buf)
	mu.Unlock()
}

// Untrack records that fd was closed.
func Untrack(fd int) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	delete(opened, fd)
	mu.Unlock()
}

var (
	exitMu sync.Mutex
	atExit []func()
)

// AtExit registers fn to run after the tests and before the check: for
// process-wide objects (a default engine) that live until the process
// ends and are closed here so they do not count as leaks. A no-op
// outside a test binary using Main.
func AtExit(fn func()) {
	if !enabled.Load() {
		return
	}
	exitMu.Lock()
	atExit = append(atExit, fn)
	exitMu.Unlock()
}

// Runner is what Main needs of a test binary: *testing.M. Taking it as an
// interface keeps package testing out of the production binaries that
// link this package for Track and Untrack.
type Runner interface {
	Run() (code int)
}

// Main runs the tests of a package with tracking enabled and exits non-zero
// if descriptors tracked during the run are still open afterwards. Use it as
//
//	func TestMain(m *testing.M) { leak.Main(m) }
func Main(m Runner) {
	enabled.Store(true)
	before := openFDs()
	code := m.Run()
	exitMu.Lock()
	fns := atExit
	atExit = nil
	exitMu.Unlock()
	for _, fn := range fns {
		fn()
	}
	if code == 0 {
		if report := check(before); report != "" {
			fmt.Fprint(os.Stderr, report)
			code = 1
		}
	}
	os.Exit(code)
}

// check waits briefly for finalizers and deferred closes, then describes
// what is still open; empty means nothing leaked.
func check(before map[int]string) string {
	var report string
	for attempt := 0; attempt < 20; attempt++ {
		runtime.GC()
		report = describe(before)
		if report == "" {
			return ""
		}
		time.Sleep(25 * time.Millisecond)
	}
	return report
}

func describe(before map[int]string) string {
	var b strings.Builder
	mu.Lock()
	fds := make([]int, 0, len(opened))
	for fd := range opened {
		fds = append(fds, fd)
	}
	sort.Ints(fds)
	for _, fd := range fds {
		fmt.Fprintf(&b, "leak: fd %d (%s) still open, opened at:\n%s\n", fd, target(fd), opened[fd])
	}
	mu.Unlock()
	for fd, tgt := range openFDs() {
		if _, ok := before[fd]; ok {
			continue
		}
		if _, ok := opened[fd]; ok {
			continue
		}
		if runtimeOwned(tgt) {
			continue
		}
		fmt.Fprintf(&b, "leak: fd %d (%s) opened during the tests and still open\n", fd, tgt)
	}
	return b.String()
}

// runtimeOwned reports descriptors the Go runtime and os packages keep for
// themselves (netpoller epoll, its wakeup eventfd/pipe, pidfds of reaped
// children), which a test cannot close.
func runtimeOwned(target string) bool {
	return strings.HasPrefix(target, "anon_inode:[eventpoll]") ||
		strings.HasPrefix(target, "anon_inode:[eventfd]") ||
		strings.HasPrefix(target, "anon_inode:[pidfd]") ||
		strings.HasPrefix(target, "pipe:")
}

func openFDs() map[int]string {
	fds := map[int]string{}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fds
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The descriptor ReadDir used to list the directory is closed by
		// now and reads as "closed"; it is not a leak.
		if t := target(fd); t != "closed" {
			fds[fd] = t
		}
	}
	return fds
}

func target(fd int) string {
	t, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "closed"
	}
	return t
}

// Goroutines returns the number of goroutines whose stack mentions any of
// the given substrings (package paths, function names). Tests use it to
// assert that a component stopped every goroutine it started.
func Goroutines(substrings ...string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, s := range substrings {
			if strings.Contains(g, s) {
				n++
				break
			}
		}
	}
	return n
}

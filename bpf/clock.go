package bpf

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Heartbeats are compared by the program with bpf_ktime_get_coarse_ns()
// (Linux 5.11+), the kernel's CLOCK_MONOTONIC_COARSE: a tick's resolution
// is plenty for a 1 s staleness and it costs the program no clock read. A
// process in a time namespace (unshare -T, some container runtimes) reads
// the monotonic clocks shifted by its namespace's offset, so kernelNow
// subtracts that offset, read once from /proc/self/timens_offsets (Linux
// 5.6+; absent or all zero otherwise). That file shows the offsets of the
// namespace the process's children get, which is its own except between
// an unshare(CLONE_NEWTIME) and the next fork, which no server does.
// Suspend does not matter: both sides read the same clock.

var (
	timensOnce   sync.Once
	timensOffset time.Duration
	timensErr    error
)

// kernelNow returns CLOCK_MONOTONIC_COARSE as the kernel (and the XDP
// program) sees it, in nanoseconds.
func kernelNow() (uint64, error) {
	timensOnce.Do(func() { timensOffset, timensErr = readTimensOffset("/proc/self/timens_offsets") })
	if timensErr != nil {
		return 0, timensErr
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC_COARSE): %w", err)
	}
	return uint64(ts.Nano() - timensOffset.Nanoseconds()), nil
}

// readTimensOffset returns the monotonic offset of the time namespace the
// process is in. The file has one line per clock: "monotonic <s> <ns>".
// A missing file means a kernel without time namespaces: no offset.
func readTimensOffset(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the time namespace offsets: %w", err)
	}
	defer f.Close()
	return parseTimensOffsets(bufio.NewScanner(f))
}

func parseTimensOffsets(sc *bufio.Scanner) (time.Duration, error) {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// The clock is named ("monotonic") or, on some kernels, numbered
		// (CLOCK_MONOTONIC = 1).
		if len(f) != 3 || (f[0] != "monotonic" && f[0] != "1") {
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("time namespace offsets: bad line %q", sc.Text())
		}
		return time.Duration(sec)*time.Second + time.Duration(nsec), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading the time namespace offsets: %w", err)
	}
	return 0, nil
}

package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procUsage is the CPU time and memory of a set of processes.
type procUsage struct {
	cpu     time.Duration // utime+stime, all threads, live processes
	rssB    int64         // VmRSS summed
	hwmB    int64         // VmHWM summed
	counted int           // processes read
}

// treeUsage sums the usage of the processes roots and all their live
// descendants. Processes that vanished are skipped.
func treeUsage(roots ...int) procUsage {
	var u procUsage
	seen := map[int]bool{}
	stack := append([]int(nil), roots...)
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if pid <= 0 || seen[pid] {
			continue
		}
		seen[pid] = true
		cpu, err := procCPU(pid)
		if err != nil {
			continue
		}
		u.cpu += cpu
		u.counted++
		rss, hwm := procMem(pid)
		u.rssB += rss
		u.hwmB += hwm
		stack = append(stack, procChildren(pid)...)
	}
	return u
}

// procCPU reads utime+stime of pid (all its threads) from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU takes utime and stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name in parentheses may hold spaces.
func parseStatCPU(data []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("bench: malformed /proc stat line")
	}
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state); utime is field 14.
	if len(fields) < 13 {
		return 0, fmt.Errorf("bench: short /proc stat line")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: bad utime/stime in /proc stat line")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

func procMem(pid int) (rssB, hwmB int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			rssB = parseKB(v)
		case "VmHWM":
			hwmB = parseKB(v)
		}
	}
	return rssB, hwmB
}

func parseKB(v string) int64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n << 10
}

func procChildren(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

package shed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// CPU sampling constants: go-zero core/stat/usage.go (cpuRefreshInterval,
// beta), which with these two values averages over roughly the last 5 s.
const (
	DefaultCPUInterval = 250 * time.Millisecond
	cpuBeta            = 0.95
)

// CPUSampler keeps a smoothed machine CPU usage in per mille, read from
// /proc/stat (or any CPUReader) on a background ticker. Usage is one atomic
// load, for the request path.
type CPUSampler struct {
	read      CPUReader
	usage     atomic.Int64
	prevBusy  uint64
	prevTotal uint64
	primed    bool
	smoothed  float64
}

// CPUReader returns cumulative busy and total CPU time (any unit, the same
// for both), like the first line of /proc/stat.
type CPUReader func() (busy, total uint64, err error)

// NewCPUSampler returns a sampler reading from read; nil means ProcStat.
func NewCPUSampler(read CPUReader) *CPUSampler {
	if read == nil {
		read = ProcStat
	}
	return &CPUSampler{read: read}
}

// Usage returns the smoothed usage in per mille (0..1000).
func (c *CPUSampler) Usage() int64 { return c.usage.Load() }

// Sample reads the counters once and folds the usage since the previous
// Sample into the moving average: u ← β·u + (1−β)·Δbusy/Δtotal, β = 0.95
// (go-zero). The first call only primes the counters. Run calls it on a
// ticker; tests call it directly. Not safe for concurrent callers.
func (c *CPUSampler) Sample() error {
	busy, total, err := c.read()
	if err != nil {
		return fmt.Errorf("shed: sampling CPU: %w", err)
	}
	if c.primed && total > c.prevTotal && busy >= c.prevBusy {
		cur := float64(busy-c.prevBusy) / float64(total-c.prevTotal) * cpuMax
		c.smoothed = c.smoothed*cpuBeta + min(cur, cpuMax)*(1-cpuBeta)
		c.usage.Store(int64(c.smoothed + 0.5))
	}
	c.prevBusy, c.prevTotal, c.primed = busy, total, true
	return nil
}

// Run samples every interval (0: DefaultCPUInterval) until ctx ends; it
// returns ctx's error, or the first read error (the usage then stays at
// its last value, so a broken /proc does not open the gate).
func (c *CPUSampler) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultCPUInterval
	}
	if err := c.Sample(); err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := c.Sample(); err != nil {
				return err
			}
		}
	}
}

// ProcStat reads the machine's CPU time from /proc/stat.
func ProcStat() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return ParseProcStat(b)
}

var errProcStat = errors.New("no aggregate \"cpu\" line")

// ParseProcStat parses the aggregate "cpu" line of /proc/stat (proc(5)):
// user nice system idle iowait irq softirq steal guest guest_nice, in
// clock ticks. Busy is everything but idle and iowait; guest time is
// already inside user and nice, so it is not added again.
func ParseProcStat(b []byte) (busy, total uint64, err error) {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, fmt.Errorf("parsing /proc/stat: %w", errProcStat)
	}
	var v [8]uint64 // user … steal
	for i := 1; i < len(f) && i <= len(v); i++ {
		n, err := strconv.ParseUint(string(f[i]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing /proc/stat: field %d: %w", i, err)
		}
		v[i-1] = n
	}
	idle := v[3] + v[4]
	for _, x := range v {
		if total+x < total {
			return 0, 0, fmt.Errorf("parsing /proc/stat: counters overflow 64 bits")
		}
		total += x
	}
	return total - idle, total, nil
}

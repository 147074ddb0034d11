package sysinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPUSource says where a queue's CPU came from.
type CPUSource string

const (
	// CPUFromIRQAffinity: the CPU the queue's own interrupt is affine to
	// (/proc/irq/N/effective_affinity_list, else smp_affinity_list), so
	// the loop runs where the NIC's softirq work for the queue runs.
	CPUFromIRQAffinity CPUSource = "irq-affinity"
	// CPUFromQueueModulo: queue mod the number of usable CPUs, for devices
	// without per-queue interrupts (veth and other virtual devices) or
	// whose queue interrupt is affine only to CPUs this process may not
	// use (QueueInfo.Note says which).
	CPUFromQueueModulo CPUSource = "queue-mod-cpus"
)

// QueueInfo is one receive queue of an interface.
type QueueInfo struct {
	Queue int `json:"queue"`
	// IRQ is the queue's own interrupt, -1 when there is none.
	IRQ     int    `json:"irq"`
	IRQName string `json:"irq_name,omitempty"` // as /proc/interrupts names it
	// Affinity is the CPU list the IRQ is affine to.
	Affinity []int     `json:"irq_affinity,omitempty"`
	CPU      int       `json:"cpu"`
	Source   CPUSource `json:"cpu_source"`
	Note     string    `json:"note,omitempty"`
}

// QueueMap is an interface's receive queues, their interrupts and the CPU
// each queue's loop should run on.
type QueueMap struct {
	Iface string `json:"iface"`
	// Driver and BusInfo are what ethtool reports ("veth", ""), when it
	// answers.
	Driver  string `json:"driver,omitempty"`
	BusInfo string `json:"bus_info,omitempty"`
	// Virtual: the interface has no device behind it (veth, bridge,
	// tun...): /sys/class/net/IF/device is absent, or, where this
	// process's /sys does not show the interface (another network
	// namespace's sysfs), ethtool reports no bus. Frames on it never
	// crossed a wire.
	Virtual     bool   `json:"virtual"`
	VirtualFrom string `json:"virtual_from"`
	// RXQueues is the number of receive queues; CountFrom says how it was
	// read (ETHTOOL_GCHANNELS, else /sys/class/net/IF/queues/rx-*).
	RXQueues  int    `json:"rx_queues"`
	CountFrom string `json:"count_from"`
	// CPUs are the CPUs this process may run on, which the map uses.
	CPUs   []int       `json:"cpus"`
	Queues []QueueInfo `json:"queues"`
}

// Channels is what ETHTOOL_GCHANNELS reports (current counts).
type Channels struct {
	RX, TX, Other, Combined uint32
}

// Ethtool is the part of ethtool's ioctl interface QueueMap uses.
type Ethtool interface {
	// Channels returns the interface's channel counts
	// (ETHTOOL_GCHANNELS); an error satisfying errors.Is(err,
	// unix.EOPNOTSUPP) means the driver does not report them.
	Channels(iface string) (Channels, error)
	// DriverInfo returns the driver name and bus address
	// (ETHTOOL_GDRVINFO).
	DriverInfo(iface string) (driver, busInfo string, err error)
}

// System is where QueueMap reads the system from; the roots and ethtool
// can be replaced by fakes in tests. The zero value is not usable: start
// from Live.
type System struct {
	SysRoot  string // "/sys"
	ProcRoot string // "/proc"
	// CPUs the map may use; nil means the calling thread's affinity mask.
	CPUs []int
	// Ethtool answers channel and driver queries; nil skips them.
	Ethtool Ethtool
}

// Live is the running system: /sys, /proc, the calling thread's CPUs and
// ethtool ioctls on a socket of the calling thread's network namespace.
func Live() System {
	return System{SysRoot: "/sys", ProcRoot: "/proc", Ethtool: kernelEthtool{}}
}

// InterfaceQueues is Live().QueueMap(iface).
func InterfaceQueues(iface string) (QueueMap, error) { return Live().QueueMap(iface) }

// QueueMap reads the receive queues of iface, finds each queue's own
// interrupt and the CPU it is affine to, and falls back to queue mod the
// number of usable CPUs where there is none. How each fact was found is in
// the result. It fails only when it cannot count the queues.
//
// A queue's interrupt is found among the device's MSI interrupts
// (/sys/class/net/IF/device/msi_irqs, or its parent device's, as for
// virtio), named in /proc/interrupts: a name whose last number is the
// queue index and that is not a transmit-only or control vector
// ("eth0-TxRx-3", "i40e-eth0-TxRx-3", "mlx5_comp3@pci:…", "virtio2-input.3";
// not "eth0-tx-3", "virtio2-output.3", "virtio2-config").
func (s System) QueueMap(iface string) (QueueMap, error) {
	m := QueueMap{Iface: iface}
	fail := func(err error) (QueueMap, error) { return m, fmt.Errorf("queue map of %s: %w", iface, err) }
	if iface == "" || strings.ContainsAny(iface, "/") || iface == "." || iface == ".." {
		return fail(fmt.Errorf("bad interface name %q", iface))
	}
	cpus := s.CPUs
	if cpus == nil {
		var err error
		if cpus, err = allowedCPUs(); err != nil {
			return fail(err)
		}
	}
	if len(cpus) == 0 {
		return fail(errors.New("no usable CPU"))
	}
	m.CPUs = cpus
	netDir := filepath.Join(s.SysRoot, "class", "net", iface)
	_, statErr := os.Stat(netDir)
	inSysfs := statErr == nil && sameInterface(netDir, iface)

	var ethErr error
	if s.Ethtool != nil {
		m.Driver, m.BusInfo, ethErr = s.Ethtool.DriverInfo(iface)
		if ch, err := s.Ethtool.Channels(iface); err == nil && ch.RX+ch.Combined > 0 {
			m.RXQueues = int(ch.RX + ch.Combined)
			m.CountFrom = fmt.Sprintf("ethtool channels (rx %d, combined %d)", ch.RX, ch.Combined)
		} else if err != nil {
			ethErr = errors.Join(ethErr, err)
		}
	}
	if m.RXQueues == 0 {
		n, err := countRXQueues(netDir)
		if err != nil {
			if !inSysfs {
				err = fmt.Errorf("%s is not in this process's /sys (another network namespace's? run inside it with ip netns exec) and ethtool did not answer (%v): %w",
					iface, ethErr, err)
			}
			return fail(err)
		}
		m.RXQueues, m.CountFrom = n, "sysfs "+filepath.Join(netDir, "queues", "rx-*")
	}

	var device string
	switch {
	case inSysfs:
		device = filepath.Join(netDir, "device")
		if _, err := os.Stat(device); err != nil {
			m.Virtual, m.VirtualFrom, device = true, "sysfs: no "+device, ""
		} else {
			m.VirtualFrom = "sysfs: " + device + " exists"
		}
	case ethErr == nil && s.Ethtool != nil:
		m.Virtual = m.BusInfo == ""
		m.VirtualFrom = fmt.Sprintf("ethtool: driver %q, bus %q", m.Driver, m.BusInfo)
	default:
		m.VirtualFrom = "unknown: not in this /sys and no ethtool answer"
	}

	irqs := map[int]irqInfo{}
	if device != "" {
		irqs = s.queueIRQs(device)
	}
	for q := range m.RXQueues {
		qi := QueueInfo{Queue: q, IRQ: -1, CPU: cpus[q%len(cpus)], Source: CPUFromQueueModulo}
		if irq, ok := irqs[q]; ok {
			qi.IRQ, qi.IRQName = irq.number, irq.name
			aff, err := s.irqAffinity(irq.number)
			qi.Affinity = aff
			switch cpu, ok := firstUsable(aff, cpus); {
			case err != nil:
				qi.Note = err.Error()
			case ok:
				qi.CPU, qi.Source = cpu, CPUFromIRQAffinity
			default:
				qi.Note = fmt.Sprintf("IRQ %d is affine to CPUs %s, none of which this process may use (%s)",
					irq.number, FormatCPUList(aff), FormatCPUList(cpus))
			}
		}
		m.Queues = append(m.Queues, qi)
	}
	return m, nil
}

// sameInterface reports whether the sysfs entry netDir is the interface
// the calling thread's network namespace calls iface, not a namesake in
// the namespace that mounted /sys ("eth0" exists in most): its ifindex
// and MAC must match. An interface this namespace does not have, or a
// sysfs entry without those files (a fake tree), is taken as it is.
func sameInterface(netDir, iface string) bool {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return true
	}
	index, err1 := os.ReadFile(filepath.Join(netDir, "ifindex"))
	mac, err2 := os.ReadFile(filepath.Join(netDir, "address"))
	if err1 != nil || err2 != nil {
		return true
	}
	return strings.TrimSpace(string(index)) == strconv.Itoa(ifc.Index) &&
		strings.EqualFold(strings.TrimSpace(string(mac)), ifc.HardwareAddr.String())
}

func countRXQueues(netDir string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(netDir, "queues"))
	if err != nil {
		return 0, fmt.Errorf("counting RX queues: %w", err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "rx-") {
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("counting RX queues: no rx-* in %s: %w", filepath.Join(netDir, "queues"), fs.ErrNotExist)
	}
	return n, nil
}

type irqInfo struct {
	number int
	name   string
}

// queueIRQs maps queue index to the device's per-queue receive interrupt.
func (s System) queueIRQs(device string) map[int]irqInfo {
	out := map[int]irqInfo{}
	var msi []int
	dirs := []string{filepath.Join(device, "msi_irqs")}
	if real, err := filepath.EvalSymlinks(device); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(real), "msi_irqs"))
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				msi = append(msi, n)
			}
		}
		if len(msi) > 0 {
			break
		}
	}
	if len(msi) == 0 {
		return out
	}
	slices.Sort(msi)
	names := s.interruptNames()
	for _, irq := range msi {
		name := names[irq]
		if q, ok := rxQueueOf(name); ok {
			if _, taken := out[q]; !taken {
				out[q] = irqInfo{number: irq, name: name}
			}
		}
	}
	return out
}

// interruptNames reads the last column of /proc/interrupts by IRQ number.
func (s System) interruptNames() map[int]string {
	names := map[int]string{}
	f, err := os.Open(filepath.Join(s.ProcRoot, "interrupts"))
	if err != nil {
		return names
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(fields[0], ":"))
		if err != nil || !strings.HasSuffix(fields[0], ":") {
			continue
		}
		names[n] = fields[len(fields)-1]
	}
	return names
}

// rxQueueOf reads the receive queue an interrupt name stands for: its last
// number, unless the name is a transmit-only or control vector.
func rxQueueOf(name string) (int, bool) {
	name, _, _ = strings.Cut(name, "@") // mlx5_comp3@pci:0000:3b:00.0
	lower := strings.ToLower(name)
	rx := strings.Contains(lower, "rx") || strings.Contains(lower, "input") || strings.Contains(lower, "comp") ||
		strings.Contains(lower, "fp-") || strings.Contains(lower, "queue")
	for _, word := range []string{"config", "ctrl", "control", "admin", "async", "other", "misc", "event", "mgmt", "aux"} {
		if strings.Contains(lower, word) {
			return 0, false
		}
	}
	if !rx && (strings.Contains(lower, "tx") || strings.Contains(lower, "output")) {
		return 0, false
	}
	end := len(name)
	start := end
	for start > 0 && name[start-1] >= '0' && name[start-1] <= '9' {
		start--
	}
	if start == end || start == 0 {
		return 0, false
	}
	if sep := name[start-1]; sep != '-' && sep != '.' && sep != '_' && !rx {
		return 0, false // "eth0" alone is no queue vector
	}
	q, err := strconv.Atoi(name[start:end])
	return q, err == nil
}

// irqAffinity reads the CPUs an IRQ fires on: its effective affinity
// where the kernel reports one (a single CPU on x86), else its configured
// smp_affinity_list.
func (s System) irqAffinity(irq int) ([]int, error) {
	dir := filepath.Join(s.ProcRoot, "irq", strconv.Itoa(irq))
	var errs []error
	for _, name := range []string{"effective_affinity_list", "smp_affinity_list"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cpus, err := ParseCPUList(strings.TrimSpace(string(data)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(dir, name), err))
			continue
		}
		if len(cpus) > 0 {
			return cpus, nil
		}
	}
	return nil, fmt.Errorf("affinity of IRQ %d: %w", irq, errors.Join(errs...))
}

func firstUsable(aff, cpus []int) (int, bool) {
	for _, c := range aff {
		if slices.Contains(cpus, c) {
			return c, true
		}
	}
	return 0, false
}

// ParseCPUList parses the kernel's CPU list format ("0-3,8,10-11").
func ParseCPUList(s string) ([]int, error) {
	var out []int
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: bad %q", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<16 {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// FormatCPUList writes cpus in the kernel's CPU list format.
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// allowedCPUs is the calling thread's affinity mask as a list.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var out []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

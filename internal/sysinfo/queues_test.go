package sysinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
)

// fakeTree builds a /sys and /proc under a temporary directory.
type fakeTree struct {
	t    *testing.T
	root string
}

func newFakeTree(t *testing.T) *fakeTree { return &fakeTree{t: t, root: t.TempDir()} }

func (f *fakeTree) write(path, content string) {
	f.t.Helper()
	full := filepath.Join(f.root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) mkdir(path string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, path), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// nic makes /sys/class/net/iface with rx queues and a device link to a
// device directory (relative, as sysfs has it), returning the device path.
func (f *fakeTree) nic(iface string, rxQueues int, device string) {
	f.t.Helper()
	for q := range rxQueues {
		f.mkdir(fmt.Sprintf("sys/class/net/%s/queues/rx-%d", iface, q))
		f.mkdir(fmt.Sprintf("sys/class/net/%s/queues/tx-%d", iface, q))
	}
	if device == "" {
		return
	}
	f.mkdir("sys/" + device)
	if err := os.Symlink("../../../"+device, filepath.Join(f.root, "sys/class/net", iface, "device")); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) msi(device string, irqs ...int) {
	for _, irq := range irqs {
		f.write(fmt.Sprintf("sys/%s/msi_irqs/%d", device, irq), "msix\n")
	}
}

// interrupts writes /proc/interrupts for two CPUs with the given names.
func (f *fakeTree) interrupts(names map[int]string) {
	var b strings.Builder
	b.WriteString("           CPU0       CPU1\n")
	var irqs []int
	for irq := range names {
		irqs = append(irqs, irq)
	}
	slices.Sort(irqs)
	for _, irq := range irqs {
		fmt.Fprintf(&b, "%4d:         12          0 PCI-MSIX-0000:3b:00.0 %d-edge      %s\n", irq, irq, names[irq])
	}
	b.WriteString("NMI:          0          0   Non-maskable interrupts\n")
	f.write("proc/interrupts", b.String())
}

func (f *fakeTree) affinity(irq int, smp, effective string) {
	f.write(fmt.Sprintf("proc/irq/%d/smp_affinity_list", irq), smp+"\n")
	if effective != "" {
		f.write(fmt.Sprintf("proc/irq/%d/effective_affinity_list", irq), effective+"\n")
	}
}

func (f *fakeTree) system(cpus ...int) System {
	return System{SysRoot: filepath.Join(f.root, "sys"), ProcRoot: filepath.Join(f.root, "proc"), CPUs: cpus}
}

type want struct {
	irq    int
	cpu    int
	source CPUSource
}

func checkQueues(t *testing.T, m QueueMap, wants []want) {
	t.Helper()
	if m.RXQueues != len(wants) || len(m.Queues) != len(wants) {
		t.Fatalf("%d queues (%d listed), want %d: %+v", m.RXQueues, len(m.Queues), len(wants), m)
	}
	for i, w := range wants {
		q := m.Queues[i]
		if q.Queue != i || q.IRQ != w.irq || q.CPU != w.cpu || q.Source != w.source {
			t.Errorf("queue %d: %+v; want IRQ %d, CPU %d from %s", i, q, w.irq, w.cpu, w.source)
		}
	}
}

// A mlx5-like NIC: completion vectors named mlx5_compN@pci, an async
// vector, one IRQ per queue each pinned to one CPU.
func TestQueueMapPerQueueIRQs(t *testing.T) {
	f := newFakeTree(t)
	dev := "devices/pci0000:00/0000:3b:00.0"
	f.nic("eth9", 4, dev)
	f.msi(dev, 100, 101, 102, 103, 104)
	f.interrupts(map[int]string{100: "mlx5_async0@pci:0000:3b:00.0", 101: "mlx5_comp0@pci:0000:3b:00.0",
		102: "mlx5_comp1@pci:0000:3b:00.0", 103: "mlx5_comp2@pci:0000:3b:00.0", 104: "mlx5_comp3@pci:0000:3b:00.0", 7: "eth9-TxRx-0"})
	for q, cpu := range []string{"3", "2", "1", "0"} {
		f.affinity(101+q, cpu, "")
	}
	m, err := f.system(0, 1, 2, 3).QueueMap("eth9")
	if err != nil {
		t.Fatal(err)
	}
	if m.Virtual || !strings.HasPrefix(m.VirtualFrom, "sysfs") || !strings.HasPrefix(m.CountFrom, "sysfs") {
		t.Errorf("virtual %v (%s), count from %s; want a device, both from sysfs", m.Virtual, m.VirtualFrom, m.CountFrom)
	}
	// IRQ 7 names the interface but is not one of the device's MSI IRQs.
	checkQueues(t, m, []want{{101, 3, CPUFromIRQAffinity}, {102, 2, CPUFromIRQAffinity}, {103, 1, CPUFromIRQAffinity}, {104, 0, CPUFromIRQAffinity}})
	if m.Queues[2].IRQName != "mlx5_comp2@pci:0000:3b:00.0" || !slices.Equal(m.Queues[2].Affinity, []int{1}) {
		t.Errorf("queue 2: %+v", m.Queues[2])
	}
}

// An i40e-like NIC: TxRx vectors, a misc vector and a transmit-only one;
// the effective affinity (one CPU) wins over a configured range; an IRQ
// affine only to CPUs the process may not use falls back to the modulo.
func TestQueueMapEffectiveAffinityAndForeignCPUs(t *testing.T) {
	f := newFakeTree(t)
	dev := "devices/pci0000:00/0000:3b:00.1"
	f.nic("ens1f1", 3, dev)
	f.msi(dev, 60, 61, 62, 63, 64)
	f.interrupts(map[int]string{60: "i40e-0000:3b:00.1:misc", 61: "i40e-ens1f1-TxRx-0", 62: "i40e-ens1f1-TxRx-1",
		63: "ens1f1-tx-2", 64: "i40e-ens1f1-TxRx-2"})
	f.affinity(61, "0-3", "2")
	f.affinity(62, "1", "")
	f.affinity(64, "6-7", "7")
	m, err := f.system(0, 1, 2, 3).QueueMap("ens1f1")
	if err != nil {
		t.Fatal(err)
	}
	checkQueues(t, m, []want{{61, 2, CPUFromIRQAffinity}, {62, 1, CPUFromIRQAffinity}, {64, 2, CPUFromQueueModulo}})
	if n := m.Queues[2].Note; !strings.Contains(n, "IRQ 64") || !strings.Contains(n, "7") || !strings.Contains(n, "0-3") {
		t.Errorf("queue 2's note %q does not say why the IRQ's CPU was not used", n)
	}
}

// virtio: the net device's parent (the PCI function) has the MSI IRQs;
// input vectors are the receive queues, output and config are not.
func TestQueueMapVirtio(t *testing.T) {
	f := newFakeTree(t)
	pci := "devices/pci0000:00/0000:00:03.0"
	f.nic("eth0", 2, pci+"/virtio2")
	f.msi(pci, 37, 38, 39, 40, 41)
	f.interrupts(map[int]string{37: "virtio2-config", 38: "virtio2-input.0", 39: "virtio2-output.0", 40: "virtio2-input.1", 41: "virtio2-output.1"})
	f.affinity(38, "0-1", "1")
	f.affinity(40, "0-1", "0")
	m, err := f.system(0, 1).QueueMap("eth0")
	if err != nil {
		t.Fatal(err)
	}
	checkQueues(t, m, []want{{38, 1, CPUFromIRQAffinity}, {40, 0, CPUFromIRQAffinity}})
}

// A veth in sysfs: no device, so virtual, and queue mod the CPUs.
func TestQueueMapVirtualInSysfs(t *testing.T) {
	f := newFakeTree(t)
	f.nic("veth0", 3, "")
	f.interrupts(map[int]string{})
	m, err := f.system(4, 5).QueueMap("veth0")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Virtual || !strings.Contains(m.VirtualFrom, "no ") {
		t.Errorf("virtual %v (%s); want virtual from sysfs", m.Virtual, m.VirtualFrom)
	}
	checkQueues(t, m, []want{{-1, 4, CPUFromQueueModulo}, {-1, 5, CPUFromQueueModulo}, {-1, 4, CPUFromQueueModulo}})
}

type fakeEthtool struct {
	ch            Channels
	chErr         error
	driver, bus   string
	drvErr        error
	channelsCalls int
}

func (f *fakeEthtool) Channels(string) (Channels, error) { f.channelsCalls++; return f.ch, f.chErr }
func (f *fakeEthtool) DriverInfo(string) (string, string, error) {
	return f.driver, f.bus, f.drvErr
}

// ethtool's channel count wins over sysfs; without an answer sysfs counts;
// an interface this /sys does not show is judged by ethtool's bus; with
// neither, QueueMap fails and says why.
func TestQueueMapEthtool(t *testing.T) {
	f := newFakeTree(t)
	f.nic("eth1", 2, "devices/pci0000:00/0000:01:00.0")
	s := f.system(0, 1)
	s.Ethtool = &fakeEthtool{ch: Channels{Combined: 4, TX: 4}, driver: "ixgbe", bus: "0000:01:00.0"}
	m, err := s.QueueMap("eth1")
	if err != nil || m.RXQueues != 4 || !strings.Contains(m.CountFrom, "combined 4") || m.Driver != "ixgbe" || m.Virtual {
		t.Fatalf("with ethtool channels: %+v, %v", m, err)
	}
	s.Ethtool = &fakeEthtool{chErr: unix.EOPNOTSUPP, driver: "x", bus: "y"}
	if m, err = s.QueueMap("eth1"); err != nil || m.RXQueues != 2 || !strings.HasPrefix(m.CountFrom, "sysfs") {
		t.Fatalf("without ethtool channels: %+v, %v", m, err)
	}
	s.Ethtool = &fakeEthtool{ch: Channels{RX: 2}, driver: "veth"}
	if m, err = s.QueueMap("vethX"); err != nil || !m.Virtual || !strings.HasPrefix(m.VirtualFrom, "ethtool") || m.RXQueues != 2 {
		t.Fatalf("an interface outside this /sys: %+v, %v; want virtual from ethtool's empty bus", m, err)
	}
	s.Ethtool = &fakeEthtool{chErr: unix.ENODEV, drvErr: unix.ENODEV}
	if _, err = s.QueueMap("nope0"); err == nil || !strings.Contains(err.Error(), "ip netns exec") {
		t.Fatalf("an interface nobody knows: %v; want an error saying where to run", err)
	}
	if _, err := s.QueueMap("../etc"); err == nil {
		t.Fatal("a path as interface name was accepted")
	}
}

func TestRXQueueOf(t *testing.T) {
	for name, want := range map[string]int{
		"eth0-TxRx-3": 3, "i40e-eth0-TxRx-12": 12, "mlx5_comp7@pci:0000:3b:00.0": 7, "virtio2-input.5": 5,
		"ens5-Tx-Rx-0": 0, "eth0-rx-2": 2, "ice-ens1f0-TxRx-1": 1, "eth1-fp-4": 4, "iwlwifi:queue_3": 3,
		"eth0-tx-2": -1, "virtio2-output.0": -1, "virtio2-config": -1, "mlx5_async0@pci:0000:3b:00.0": -1,
		"i40e-0000:3b:00.1:misc": -1, "eth0": -1, "ahci[0000:00:1f.2]": -1, "": -1, "rx": -1,
	} {
		q, ok := rxQueueOf(name)
		if !ok {
			q = -1
		}
		if q != want {
			t.Errorf("rxQueueOf(%q) = %d, want %d", name, q, want)
		}
	}
}

func TestCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "0-3": {0, 1, 2, 3}, "0-1,4,6-7": {0, 1, 4, 6, 7}, "": nil} {
		got, err := ParseCPUList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
		if f := FormatCPUList(want); f != in {
			t.Errorf("FormatCPUList(%v) = %q, want %q", want, f, in)
		}
	}
	for _, bad := range []string{"a", "3-1", "-1", "1,,2", "0-99999999"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) accepted", bad)
		}
	}
}

const helperEnv = "ZEROHOP_SYSINFO_TEST_HELPER"

// A real multi-queue veth, from inside its namespace. From this process
// (its /sys is the root namespace's, where the veth does not appear) the
// count comes from ETHTOOL_GCHANNELS and "virtual" from ethtool's empty
// bus; from a process started by `ip netns exec` (a /sys of that
// namespace), both come from sysfs when ethtool is not asked. Either way
// there are no per-queue IRQs: queue mod CPUs.
func TestQueueMapOnVeth(t *testing.T) {
	link := topo.Pair(t, topo.Config{Queues: 4})
	cpus, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	check := func(m QueueMap, countFrom, virtualFrom string) {
		t.Helper()
		if !m.Virtual || !strings.HasPrefix(m.CountFrom, countFrom) || !strings.HasPrefix(m.VirtualFrom, virtualFrom) {
			t.Errorf("virtual %v (%s), count from %q; want virtual from %s, count from %s", m.Virtual, m.VirtualFrom, m.CountFrom, virtualFrom, countFrom)
		}
		var wants []want
		for q := range 4 {
			wants = append(wants, want{-1, cpus[q%len(cpus)], CPUFromQueueModulo})
		}
		checkQueues(t, m, wants)
	}
	var m QueueMap
	if err := link.A.Host.Do(func() (err error) { m, err = InterfaceQueues(link.A.Iface); return err }); err != nil {
		t.Fatal(err)
	}
	if m.Driver != "veth" {
		t.Errorf("driver %q, want veth", m.Driver)
	}
	check(m, "ethtool channels (rx 4", "ethtool")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := link.A.Host.Command(context.Background(), self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+link.A.Iface)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper through ip netns exec: %v", err)
	}
	m = QueueMap{}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("helper said %q: %v", out, err)
	}
	check(m, "sysfs", "sysfs")
}

// queueMapHelper prints the sysfs-only queue map of iface as JSON.
func queueMapHelper(iface string) int {
	s := Live()
	s.Ethtool = nil
	m, err := s.QueueMap(iface)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(m)
	return 0
}

// A namesake in /sys (the namespace that mounted it has an interface of
// the same name, as most have an "eth0") is not taken for the caller's
// interface: its ifindex and MAC differ, so the map comes from ethtool.
// Here the namesake is a fake tree claiming a physical 1-queue NIC under
// the name of a real 4-queue veth in the caller's namespace.
func TestQueueMapIgnoresSysfsNamesake(t *testing.T) {
	link := topo.Pair(t, topo.Config{Queues: 4})
	f := newFakeTree(t)
	f.nic(link.A.Iface, 1, "devices/pci0000:00/0000:00:03.0")
	f.write("sys/class/net/"+link.A.Iface+"/ifindex", "999999\n")
	f.write("sys/class/net/"+link.A.Iface+"/address", "02:00:00:00:00:99\n")
	s := f.system(0)
	s.Ethtool = kernelEthtool{}
	var m QueueMap
	if err := link.A.Host.Do(func() (err error) { m, err = s.QueueMap(link.A.Iface); return err }); err != nil {
		t.Fatal(err)
	}
	if !m.Virtual || !strings.HasPrefix(m.VirtualFrom, "ethtool") || m.RXQueues != 4 {
		t.Fatalf("virtual %v (%s), %d queues: the namesake in /sys was taken for the veth", m.Virtual, m.VirtualFrom, m.RXQueues)
	}
	// The same tree with the veth's real ifindex and MAC is believed.
	f.write("sys/class/net/"+link.A.Iface+"/ifindex", fmt.Sprintf("%d\n", link.A.Ifindex))
	f.write("sys/class/net/"+link.A.Iface+"/address", link.A.MAC.String()+"\n")
	if err := link.A.Host.Do(func() (err error) { m, err = s.QueueMap(link.A.Iface); return err }); err != nil {
		t.Fatal(err)
	}
	if m.Virtual || !strings.HasPrefix(m.VirtualFrom, "sysfs") {
		t.Fatalf("virtual %v (%s): a matching sysfs entry was not used", m.Virtual, m.VirtualFrom)
	}
}

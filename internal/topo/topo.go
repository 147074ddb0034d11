package topo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Config describes a topology. The zero value is two hosts, one queue,
// default MTU, offloads untouched.
type Config struct {
	// Hosts is the number of namespaces; host 0 is joined to each other
	// host by its own veth pair. Zero means 2.
	Hosts int
	// Queues sets numrxqueues and numtxqueues on every veth. Zero means 1.
	Queues int
	// MTU of every veth; zero leaves the kernel default (1500).
	MTU int
	// TxChecksumOff turns TX checksum offload off on every veth so that
	// the kernel fills real UDP checksums (needed when a userspace stack
	// validates them).
	TxChecksumOff bool
	// XPS maps TX queue i to CPU i (mod NumCPU) on every veth, so a sender
	// pinned to CPU i transmits on queue i and the peer receives on RX
	// queue i.
	XPS bool
}

// Topology is a set of namespaces joined by veth pairs.
type Topology struct {
	Hosts []*Host
	// Links[i] joins Hosts[0] (side A) to Hosts[i+1] (side B).
	Links []*Link

	closed bool
}

// Host is one network namespace.
type Host struct {
	// Name of the namespace, as `ip netns` knows it.
	Name string
}

// Link is one veth pair between two hosts.
type Link struct {
	A, B Endpoint
}

// Endpoint is one side of a veth pair.
type Endpoint struct {
	Host    *Host
	Iface   string
	Ifindex int
	MAC     net.HardwareAddr
	Addr4   netip.Addr
	Addr6   netip.Addr
}

var seq atomic.Uint32

// uniquePrefix is short because interface names are limited to 15 bytes.
func uniquePrefix() string {
	return fmt.Sprintf("zh%x%x", os.Getpid()&0xffff, seq.Add(1))
}

// TB is the part of testing.TB the test constructors use; *testing.T and
// *testing.B satisfy it. It is declared here so that the bench harness,
// which builds topologies inside the zerohop binary, does not link package
// testing into it.
type TB interface {
	Helper()
	Cleanup(func())
	Error(args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// RequireKernelTestsEnv names the environment variable that turns a kernel
// test's skip for a missing capability or kernel feature into a failure
// when set to 1. scripts/test sets it when it runs as root, as CI does,
// where every kernel test must run.
const RequireKernelTestsEnv = "ZEROHOP_REQUIRE_KERNEL_TESTS"

// SkipMissing skips t because the environment lacks what a kernel test
// needs, named by the formatted reason, or fails it when
// RequireKernelTestsEnv is 1. Kernel tests skip through it (never t.Skip
// directly) so that CI cannot pass with them skipped.
func SkipMissing(t TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireKernelTestsEnv) == "1" {
		t.Fatalf("%s; %s=1 requires kernel tests to run, not skip", fmt.Sprintf(format, args...), RequireKernelTestsEnv)
		return
	}
	t.Skipf(format, args...)
}

// RequireRoot skips t unless the process has CAP_NET_ADMIN and CAP_SYS_ADMIN
// (to create namespaces and veths), naming whichever is missing; with
// RequireKernelTestsEnv=1 it fails t instead (see SkipMissing).
func RequireRoot(t TB) {
	t.Helper()
	if missing := MissingCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN); missing != "" {
		SkipMissing(t, "needs %s (run as root)", missing)
	}
}

// MissingCaps names the capabilities in caps that the process lacks in its
// effective set, or returns "" when it has them all.
func MissingCaps(caps ...int) string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return "capabilities (capget: " + err.Error() + ")"
	}
	names := map[int]string{
		unix.CAP_NET_ADMIN: "CAP_NET_ADMIN",
		unix.CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
		unix.CAP_BPF:       "CAP_BPF",
		unix.CAP_NET_RAW:   "CAP_NET_RAW",
		unix.CAP_IPC_LOCK:  "CAP_IPC_LOCK",
	}
	var missing []string
	for _, c := range caps {
		if data[c/32].Effective&(1<<(uint(c)%32)) == 0 {
			name := names[c]
			if name == "" {
				name = "capability " + strconv.Itoa(c)
			}
			missing = append(missing, name)
		}
	}
	return strings.Join(missing, " and ")
}

// New builds the topology described by cfg and registers its teardown with
// t.Cleanup. It skips t without root (fails it with RequireKernelTestsEnv=1)
// and fails it on any setup error.
func New(t TB, cfg Config) *Topology {
	t.Helper()
	RequireRoot(t)
	topo, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	return topo
}

// Pair builds a two-host topology and returns its one link: A in the first
// namespace ("server"), B in the second ("client").
func Pair(t TB, cfg Config) *Link {
	t.Helper()
	cfg.Hosts = 2
	return New(t, cfg).Links[0]
}

// ErrNotPermitted means the process lacks the capabilities to build a
// topology; the error wrapping it names them.
var ErrNotPermitted = errors.New("topo: not permitted")

// Build builds the topology described by cfg. The caller must Close it on
// every exit path; on error Build has already removed what it made. Without
// CAP_NET_ADMIN and CAP_SYS_ADMIN it fails with an error wrapping
// ErrNotPermitted.
func Build(cfg Config) (_ *Topology, err error) {
	if missing := MissingCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN); missing != "" {
		return nil, fmt.Errorf("%w: needs %s (run as root)", ErrNotPermitted, missing)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("topo: the ip command (iproute2) is needed: %w", err)
	}
	if cfg.Hosts == 0 {
		cfg.Hosts = 2
	}
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.Hosts < 2 || cfg.Hosts > 250 {
		return nil, fmt.Errorf("topo: Hosts = %d, want 2..250", cfg.Hosts)
	}
	prefix := uniquePrefix()
	topo := &Topology{}
	// A failure half way removes what exists. Deleting a namespace
	// destroys its veths.
	defer func() {
		if err != nil {
			topo.Close()
		}
	}()
	for i := 0; i < cfg.Hosts; i++ {
		h := &Host{Name: fmt.Sprintf("%s-h%d", prefix, i)}
		if out, err := run("ip", "netns", "add", h.Name); err != nil {
			return nil, fmt.Errorf("topo: ip netns add %s: %w: %s", h.Name, err, out)
		}
		topo.Hosts = append(topo.Hosts, h)
		if err := h.ip("link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	for i := 1; i < cfg.Hosts; i++ {
		l, err := topo.link(cfg, prefix, i)
		if err != nil {
			return nil, err
		}
		topo.Links = append(topo.Links, l)
	}
	return topo, nil
}

// link joins host 0 to host i.
func (topo *Topology) link(cfg Config, prefix string, i int) (*Link, error) {
	a, b := topo.Hosts[0], topo.Hosts[i]
	l := &Link{
		A: Endpoint{Host: a, Iface: fmt.Sprintf("%sa%d", prefix, i)},
		B: Endpoint{Host: b, Iface: fmt.Sprintf("%sb%d", prefix, i)},
	}
	args := []string{"link", "add", l.A.Iface, "netns", a.Name,
		"numtxqueues", strconv.Itoa(cfg.Queues), "numrxqueues", strconv.Itoa(cfg.Queues),
		"type", "veth", "peer", "name", l.B.Iface, "netns", b.Name,
		"numtxqueues", strconv.Itoa(cfg.Queues), "numrxqueues", strconv.Itoa(cfg.Queues)}
	if out, err := run("ip", args...); err != nil {
		return nil, fmt.Errorf("topo: ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	for side, ep := range []*Endpoint{&l.A, &l.B} {
		ep.Addr4 = netip.AddrFrom4([4]byte{10, 99, byte(i), byte(side + 1)})
		ep.Addr6 = netip.AddrFrom16([16]byte{0xfd, 0x00, 0, 0x99, 0, byte(i), 15: byte(side + 1)})
		if err := ep.configure(cfg); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (ep *Endpoint) configure(cfg Config) error {
	h := ep.Host
	if err := h.ip("addr", "add", ep.Addr4.String()+"/24", "dev", ep.Iface); err != nil {
		return err
	}
	if err := h.ip("-6", "addr", "add", ep.Addr6.String()+"/64", "dev", ep.Iface, "nodad"); err != nil {
		return err
	}
	if cfg.MTU != 0 {
		if err := h.ip("link", "set", ep.Iface, "mtu", strconv.Itoa(cfg.MTU)); err != nil {
			return err
		}
	}
	if cfg.TxChecksumOff {
		if out, err := h.Command(context.Background(), "ethtool", "-K", ep.Iface, "tx", "off").CombinedOutput(); err != nil {
			return fmt.Errorf("topo: ethtool -K %s tx off in %s: %w: %s (install ethtool)", ep.Iface, h.Name, err, out)
		}
	}
	if cfg.XPS {
		for q := 0; q < cfg.Queues; q++ {
			mask := fmt.Sprintf("%x", 1<<(q%runtime.NumCPU()))
			path := fmt.Sprintf("/sys/class/net/%s/queues/tx-%d/xps_cpus", ep.Iface, q)
			if out, err := h.Command(context.Background(), "sh", "-c", "echo "+mask+" > "+path).CombinedOutput(); err != nil {
				return fmt.Errorf("topo: XPS for %s queue %d: %w: %s", ep.Iface, q, err, out)
			}
		}
	}
	if err := h.ip("link", "set", ep.Iface, "up"); err != nil {
		return err
	}
	if err := h.Do(func() error {
		ifc, err := net.InterfaceByName(ep.Iface)
		if err != nil {
			return err
		}
		ep.Ifindex, ep.MAC = ifc.Index, ifc.HardwareAddr
		return nil
	}); err != nil {
		return fmt.Errorf("topo: reading %s in %s: %w", ep.Iface, h.Name, err)
	}
	return nil
}

// Close removes every namespace of the topology (and with them the veths).
// It tries them all and returns the first failure; closing twice is a no-op.
func (topo *Topology) Close() error {
	if topo.closed {
		return nil
	}
	var first error
	for _, h := range topo.Hosts {
		if out, err := run("ip", "netns", "del", h.Name); err != nil && first == nil {
			first = fmt.Errorf("topo: removing namespace %s: %w: %s", h.Name, err, out)
		}
	}
	topo.closed = true
	return first
}

func (h *Host) ip(args ...string) error {
	full := append([]string{"-n", h.Name}, args...)
	if out, err := run("ip", full...); err != nil {
		return fmt.Errorf("topo: ip %s: %w: %s", strings.Join(full, " "), err, out)
	}
	return nil
}

// Do runs fn on a locked OS thread inside h's namespace. The thread returns
// to the original namespace afterwards; if it cannot, the thread is left
// locked so the Go runtime discards it instead of reusing it.
func (h *Host) Do(fn func() error) error {
	return Enter(h.Name, fn)
}

// Enter runs fn on a locked OS thread inside the named network namespace
// (as listed by `ip netns`).
func Enter(netns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("topo: opening current namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + netns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("topo: opening namespace %s: %w", netns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("topo: entering namespace %s: %w", netns, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			return // stay locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Go runs fn in a new goroutine inside h's namespace and returns a channel
// that yields its error. The goroutine's thread stays locked to it.
func (h *Host) Go(fn func() error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- h.Do(fn) }()
	return done
}

// Command returns a command that runs inside h's namespace (through
// `ip netns exec`, which also gives it a /sys of that namespace).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", h.Name, name}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

// Netstat returns a counter from /proc/net/snmp inside h's namespace, e.g.
// Netstat("Udp", "InCsumErrors"), or for the IPv6 protocols ("Ip6",
// "Icmp6", "Udp6") from /proc/net/snmp6.
func (h *Host) Netstat(proto, field string) (uint64, error) {
	var value uint64
	err := h.Do(func() error {
		// /proc/net follows the reading thread's namespace only through
		// /proc/thread-self.
		file := "/proc/thread-self/net/snmp"
		if strings.HasSuffix(proto, "6") {
			file += "6"
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		var v uint64
		if strings.HasSuffix(proto, "6") {
			v, err = parseSNMP6(data, proto+field)
		} else {
			v, err = parseSNMP(data, proto, field)
		}
		value = v
		return err
	})
	return value, err
}

// parseSNMP6 reads /proc/net/snmp6, one "NameField value" pair a line.
func parseSNMP6(data []byte, name string) (uint64, error) {
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, errors.New("topo: no " + name + " in snmp6")
}

func parseSNMP(data []byte, proto, field string) (uint64, error) {
	lines := bytes.Split(data, []byte("\n"))
	for i := 0; i+1 < len(lines); i++ {
		head := strings.Fields(string(lines[i]))
		vals := strings.Fields(string(lines[i+1]))
		if len(head) == 0 || head[0] != proto+":" || len(vals) != len(head) || vals[0] != proto+":" {
			continue
		}
		for j, name := range head {
			if name == field {
				return strconv.ParseUint(vals[j], 10, 64)
			}
		}
		return 0, fmt.Errorf("topo: no field %s in %s", field, proto)
	}
	return 0, errors.New("topo: no " + proto + " section in snmp")
}

func run(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

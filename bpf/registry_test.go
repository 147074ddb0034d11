package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	bpflink "github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
)

// join joins the program of link.A's interface from this process (a
// server of its own) and closes it when the test ends.
func join(t *testing.T, ep topo.Endpoint, opts Options) *Program {
	t.Helper()
	var p *Program
	if err := ep.Host.Do(func() (err error) {
		p, err = Join(ep.Iface, opts)
		return err
	}); err != nil {
		t.Fatalf("Join(%s): %v", ep.Iface, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Two servers never serve the same port (or a port's any-address service
// and one of its addresses); a stopped server's port is taken over at once,
// and it learns of it when it resumes; Sweep removes what a killed server
// left.
func TestAddressInUseAndTakeover(t *testing.T) {
	link := topo.Pair(t, topo.Config{Queues: 2})
	const port, other = 7501, 7502
	owner := startServer(t, link.A, viaNetnsExec, port, 0)
	me := join(t, link.A, Options{})

	err := me.AddService(Service{Port: port})
	if !errors.Is(err, ErrAddrInUse) || !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("AddService on a live server's port: %v, want ErrAddrInUse and EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", owner.pid)) {
		t.Errorf("the error %q does not name the owner's pid %d", err, owner.pid)
	}
	if err := me.AddService(Service{Port: port, Addr: link.A.Addr4}); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("AddService on an address of a port another server serves for any address: %v, want ErrAddrInUse", err)
	}
	if err := me.RemoveService(port, netip.Addr{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoveService of another server's service: %v, want ErrNotFound", err)
	}
	if err := me.AddService(Service{Port: other}); err != nil {
		t.Fatal(err)
	}
	if err := me.AddService(Service{Port: other}); !errors.Is(err, ErrExists) {
		t.Fatalf("AddService twice: %v, want ErrExists", err)
	}

	// Stopped, the owner goes stale: the port is taken over at once.
	owner.signal(syscall.SIGSTOP)
	waitFor(t, "the stopped server's service to go stale", func() bool {
		s := serviceOn(t, me, port)
		return s != nil && s.Stale
	})
	if err := me.AddService(Service{Port: port, ID: 99}); err != nil {
		t.Fatalf("taking over a stale service: %v", err)
	}
	if s := serviceOn(t, me, port); s == nil || s.Stale || s.Slot != me.Slot() || s.ID != 99 {
		t.Fatalf("after the takeover the service is %+v; want it live in slot %d", s, me.Slot())
	}
	owner.signal(syscall.SIGCONT)
	if line := owner.expect("keepalive-error ", waitBound); !strings.Contains(line, ErrTakenOver.Error()) {
		t.Fatalf("the resumed server said %q; want it told of the takeover", line)
	}

	// A killed server's service stays until swept (the program ignores
	// it: its lock is free).
	victim := startServer(t, link.A, viaNetnsExec, 7503, 1)
	victim.kill9()
	n, err := me.Sweep()
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want the killed server's one service", n, err)
	}
	if s := serviceOn(t, me, 7503); s != nil {
		t.Fatalf("after Sweep the killed server's service is still listed: %+v", s)
	}
	if s := serviceOn(t, me, port); s == nil || s.Slot != me.Slot() {
		t.Fatalf("Sweep removed a live service: %+v", s)
	}
	slots, err := me.Slots()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Slot == victim.slot {
			t.Fatalf("the killed server's slot is still taken after Sweep: %+v", slots)
		}
	}
}

func serviceOn(t *testing.T, m *Program, port uint16) *Service {
	t.Helper()
	svcs, err := m.Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Port == port {
			return &s
		}
	}
	return nil
}

// waitFor polls cond for a bounded time (a guard against hangs).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// passProgram is a minimal foreign XDP program.
func passProgram(t *testing.T, name string) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: name, Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// A foreign XDP program is never replaced: Join fails naming it, Inspect
// and ProbeAttach report it; once it is gone Join attaches.
func TestForeignProgramRefused(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	prog := passProgram(t, "not_zerohop")
	var l bpflink.Link
	if err := link.A.Host.Do(func() (err error) {
		l, err = bpflink.AttachXDP(bpflink.XDPOptions{Program: prog, Interface: link.A.Ifindex, Flags: bpflink.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	info, _ := prog.Info()
	id, _ := info.ID()
	var err error
	link.A.Host.Do(func() error {
		var p *Program
		p, err = Join(link.A.Iface, Options{})
		if err == nil {
			p.Close()
		}
		return nil
	})
	if !errors.Is(err, ErrForeign) || !errors.Is(err, ErrBusy) {
		t.Fatalf("Join with a foreign program attached: %v, want ErrForeign (and ErrBusy)", err)
	}
	for _, want := range []string{`"not_zerohop"`, fmt.Sprintf("id %d", id), "native mode", link.A.Iface} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not say %s", err, want)
		}
	}
	a := inspect(t, link.A)
	if a.Zerohop || a.Name != "not_zerohop" || a.ProgramID != uint32(id) || a.Mode != "native" || !errors.Is(a.Err, ErrForeign) {
		t.Fatalf("Inspect = %+v; want the foreign program named", a)
	}
	var probe AttachProbe
	link.A.Host.Do(func() (err error) { probe, err = ProbeAttach(link.A.Iface); return err })
	if !errors.Is(probe.Native, ErrBusy) || !errors.Is(probe.Generic, ErrBusy) {
		t.Fatalf("ProbeAttach with a foreign program: %+v, want ErrBusy for both modes", probe)
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdp" {
		t.Fatalf("the foreign program was detached: ip link shows %q", got)
	}
	if now := inspect(t, link.A); now.ProgramID != uint32(id) {
		t.Fatalf("the foreign program was replaced by %d", now.ProgramID)
	}
	l.Close()
	join(t, link.A, Options{})
}

// Our own program attached through netlink (no bpf_link) cannot be shared:
// no descriptor would keep it attached. Join says so and leaves it.
func TestNetlinkAttachedProgramRefused(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	spec, err := newSpec()
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadProgram(link.A.Iface, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// ip -n remounts /sys for its namespace, so the pin lives on a bpffs
	// of our own outside /sys.
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	pinned := filepath.Join(dir, "prog")
	if err := p.prog.Pin(pinned); err != nil {
		t.Fatal(err)
	}
	defer p.prog.Unpin()
	if out, err := exec.Command("ip", "-n", link.A.Host.Name, "link", "set", "dev", link.A.Iface, "xdpdrv", "pinned", pinned).CombinedOutput(); err != nil {
		t.Fatalf("ip link set xdpdrv pinned: %v: %s", err, out)
	}
	link.A.Host.Do(func() error {
		var q *Program
		q, err = Join(link.A.Iface, Options{})
		if err == nil {
			q.Close()
		}
		return nil
	})
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "without a bpf_link") {
		t.Fatalf("Join with our program attached by netlink: %v, want ErrIncompatible saying there is no bpf_link", err)
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdp" {
		t.Fatalf("Join detached the netlink attachment: ip link shows %q", got)
	}
}

// Servers joining and leaving at the same time, the first attaching while
// another does and the last leaving while another joins: every Join
// succeeds, every server gets a slot of its own, and when all have left
// nothing is attached.
func TestJoinRaces(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	const workers, rounds = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				err := link.A.Host.Do(func() error {
					p, err := Join(link.A.Iface, Options{})
					if err != nil {
						return err
					}
					defer p.Close()
					return p.AddService(Service{Port: uint16(7600 + w)})
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if a := inspect(t, link.A); a.ProgramID != 0 {
		t.Fatalf("after every server left: %+v, want nothing attached", a)
	}
}

// The locks: a name is held by one socket of a network namespace at a
// time, probes tell held from free without queueing anything, and the
// name is free again the moment its socket closes.
func TestAbstractLocks(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	var nsA, nsB *netns
	for _, c := range []struct {
		h  *topo.Host
		ns **netns
	}{{link.A.Host, &nsA}, {link.B.Host, &nsB}} {
		if err := c.h.Do(func() (err error) { *c.ns, err = currentNetns(); return err }); err != nil {
			t.Fatal(err)
		}
	}
	defer nsA.close()
	defer nsB.close()
	name := lockName(uint32(os.Getpid()), "test")
	fd, err := nsA.tryLock(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nsA.tryLock(name); !errors.Is(err, errLockHeld) {
		t.Fatalf("second tryLock in the same namespace: %v, want errLockHeld", err)
	}
	fdB, err := nsB.tryLock(name)
	if err != nil {
		t.Fatalf("the same name in another network namespace: %v, want it free there", err)
	}
	unlock(fdB)
	probe, err := nsA.newProber()
	if err != nil {
		t.Fatal(err)
	}
	defer probe.close()
	for range 1000 { // more than a socket buffer of empty datagrams
		if held, err := probe.held(name); err != nil || !held {
			t.Fatalf("probe of a held lock: %v, %v", held, err)
		}
	}
	unlock(fd)
	if held, err := probe.held(name); err != nil || held {
		t.Fatalf("probe of a released lock: %v, %v", held, err)
	}
	fd, err = nsA.lock(name, time.Second)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock(fd)

	// A holder killed with SIGKILL frees the name at once.
	cmd := link.A.Host.Command(t.Context(), "python3", "-c",
		"import socket,sys;s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM);s.bind('\\0'+sys.argv[1]);print('held',flush=True);sys.stdin.read()", name[1:])
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "held\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("holder said %q", line)
	}
	if held, err := probe.held(name); err != nil || !held {
		t.Fatalf("probe of another process's lock: %v, %v", held, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if held, err := probe.held(name); err != nil || held {
		t.Fatalf("probe after its holder was killed: %v, %v", held, err)
	}
}

func TestParseTimensOffsets(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"monotonic           0         0\nboottime            0         0\n": 0,
		"monotonic      86400         5\nboottime          -1         0\n":   86400*time.Second + 5,
		"1 -30 0\n7 0 0\n": -30 * time.Second,
		"":                 0,
	} {
		got, err := parseTimensOffsets(bufio.NewScanner(strings.NewReader(in)))
		if err != nil || got != want {
			t.Errorf("parseTimensOffsets(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTimensOffsets(bufio.NewScanner(strings.NewReader("monotonic x 0\n"))); err == nil {
		t.Error("a bad line gave no error")
	}
}

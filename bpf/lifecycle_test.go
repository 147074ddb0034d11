package bpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

// A process holding the program dies by SIGKILL: the bpf_link goes with its
// file descriptors and the interface is left without XDP.
func TestKilledHolderLeavesNothingAttached(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := helperCommand(t, ctx, link.A.Host, "hold:"+link.A.Iface)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "attached native" {
		t.Fatalf("holder said %q, %v; want \"attached native\"", line, err)
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdp" {
		t.Fatalf("while the holder runs ip link shows %q, want xdp", got)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waited = true
	// The kernel releases the link while the process exits; allow it a
	// bounded number of looks.
	deadline := time.Now().Add(10 * time.Second)
	for xdpShown(t, link.A.Host, link.A.Iface) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("XDP still attached after the holder was killed:\n%s", ipLinkShow(t, link.A.Host, link.A.Iface))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And a new program can attach.
	attach(t, link, Options{})
}

// Pinned maps let another process read counters and edit the ACL; Close
// removes the pins.
func TestPinnedMaps(t *testing.T) {
	f := newFixture(t, Options{Pin: true})
	link, p := f.link, f.prog
	dir := PinDir(link.A.Iface)
	if p.PinDir() != dir {
		t.Fatalf("PinDir() = %q, want %q", p.PinDir(), dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"acl", "acl_hits", "counters", "meta", "services", "settings", "slot_counters", "slots", "xsks"}; !slices.Equal(names, want) {
		t.Fatalf("%s holds %v, want %v", dir, names, want)
	}

	// Another process (root namespace, as a CLI would run) reads counters
	// and denies B's /24 for port 7700.
	sink := newSink(t, link.A.Host, 7700)
	prefix := netip.PrefixFrom(link.B.Addr4, 24).Masked()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := helperCommand(t, ctx, nil, fmt.Sprintf("pinned:%s:%s:7700", dir, prefix)).Output()
	if err != nil {
		t.Fatalf("pinned helper: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var seen, passed uint64
	if len(lines) != 2 || lines[1] != "ok" {
		t.Fatalf("pinned helper said %q", out)
	}
	if _, err := fmt.Sscanf(lines[0], "seen %d passed %d", &seen, &passed); err != nil || seen < 2 || passed < 2 {
		t.Fatalf("pinned helper read %q (%v); want at least the 2 warm-up packets", lines[0], err)
	}
	rules, err := p.ACLRules()
	if err != nil || len(rules) != 1 || rules[0].Source != prefix || rules[0].Action != Deny {
		t.Fatalf("rules after the helper: %+v, %v", rules, err)
	}
	before := counters(t, p.Maps)
	f.sender.send(t, link.A.Addr4, 7700, []byte("denied"))
	f.settle(t)
	if got := sink.drain(t); len(got) != 0 {
		t.Fatalf("the rule the helper added let %d datagrams through", len(got))
	}
	checkDelta(t, before, counters(t, p.Maps), Counters{Seen: 2, Passed: 1, ACLDropped: 1})

	// OpenPinned in this process sees the same counters; its Close leaves
	// the pins.
	m, err := OpenPinned(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Counters()
	if err != nil || c.ACLDropped != 1 {
		t.Fatalf("counters through the pins: %+v, %v", c, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "counters")); err != nil {
		t.Fatalf("closing an OpenPinned handle removed the pin: %v", err)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Close %s: %v, want it gone", dir, err)
	}
	if _, err := OpenPinned(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenPinned after Close: %v, want ErrNotFound", err)
	}
}

// Pins left by a process that died are replaced; pins whose maps a loaded
// program still uses are not.
func TestStalePinsReplaced(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	root := t.TempDir() // not bpffs: PinRoot must be refused
	err := link.A.Host.Do(func() error {
		_, err := Attach(link.A.Iface, Options{Pin: true, PinRoot: root})
		return err
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("pinning outside bpffs: %v, want ErrInvalid", err)
	}

	first := attach(t, link, Options{Pin: true})
	dir := first.PinDir()
	// An interface of the same name in the other namespace (a bridge: any
	// device will do, in generic mode) collides with the live pins.
	if out, err := exec.Command("ip", "-n", link.B.Host.Name, "link", "add", link.A.Iface, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("adding a same-named interface: %v: %s", err, out)
	}
	err = link.B.Host.Do(func() error {
		p, err := Attach(link.A.Iface, Options{Pin: true})
		if err == nil {
			p.Close()
		}
		return err
	})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("pinning over live pins: %v, want ErrBusy", err)
	}
	if c, err := first.Counters(); err != nil {
		t.Fatalf("the first program's maps after the refused attach: %+v %v", c, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "counters")); err != nil {
		t.Fatalf("the refused attach removed live pins: %v", err)
	}

	// Simulate a crash: drop the program and link but leave the pins.
	first.link.Close()
	first.prog.Close()
	first.link = nil
	pinDir := first.pinDir
	first.pinDir = "" // Close must not unpin: the pins are "left behind"
	if _, err := os.Stat(filepath.Join(pinDir, "acl")); err != nil {
		t.Fatal(err)
	}
	second := attach(t, link, Options{Pin: true})
	if second.PinDir() != pinDir {
		t.Fatalf("second PinDir %q, want %q", second.PinDir(), pinDir)
	}
	m, err := OpenPinned(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The pins now lead to the second program's maps.
	if err := second.AddService(Service{Port: 7801, ID: 42}); err != nil {
		t.Fatal(err)
	}
	svcs, err := m.Services()
	if err != nil || len(svcs) != 1 || svcs[0].ID != 42 {
		t.Fatalf("services through the replaced pins: %+v, %v", svcs, err)
	}
}

package bpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
)

// runNodeHelper registers one endpoint in the node table, prints
// "registered table=<id> netns=<inode> pid=<pid>", then obeys stdin lines
// ("drain", "withdraw"; each answered "ok" or "error <err>") until stdin
// closes. args: service, addr, version, zone, weight.
func runNodeHelper(args string) int {
	q, err := url.ParseQuery(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node helper:", err)
		return 1
	}
	t, err := OpenNodeTable(NodeOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node helper:", err)
		return 1
	}
	defer t.Close()
	weight, _ := strconv.Atoi(q.Get("weight"))
	e := NodeEndpoint{Service: q.Get("service"), Addr: netip.MustParseAddrPort(q.Get("addr")), Version: q.Get("version"),
		Zone: q.Get("zone"), Weight: uint32(weight)}
	if err := t.Register(e); err != nil {
		fmt.Fprintln(os.Stderr, "node helper:", err)
		return 1
	}
	ns, _ := CurrentNetnsInode()
	fmt.Printf("registered table=%d netns=%d pid=%d\n", t.ID(), ns, os.Getpid())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var err error
		switch sc.Text() {
		case "drain":
			e.Health = NodeDraining
			err = t.Update(e)
		case "withdraw":
			err = t.Withdraw(e.Addr)
		}
		if err != nil {
			fmt.Println("error", err)
		} else {
			fmt.Println("ok")
		}
	}
	return 0
}

type nodeChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	table uint32
	netns uint64
	pid   int
}

func startNodeChild(t *testing.T, host *topo.Host, args url.Values) *nodeChild {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &nodeChild{cmd: host.Command(context.Background(), self, "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), helperEnv+"=node:"+args.Encode())
	c.cmd.Stderr = os.Stderr
	c.stdin, _ = c.cmd.StdinPipe()
	stdout, _ := c.cmd.StdoutPipe()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	})
	c.out = bufio.NewReader(stdout)
	line, err := c.out.ReadString('\n')
	if _, serr := fmt.Sscanf(line, "registered table=%d netns=%d pid=%d", &c.table, &c.netns, &c.pid); err != nil || serr != nil {
		t.Fatalf("node helper said %q: %v %v", line, err, serr)
	}
	return c
}

func (c *nodeChild) do(t *testing.T, cmd string) {
	t.Helper()
	fmt.Fprintln(c.stdin, cmd)
	if line, err := c.out.ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("node helper %s: %q, %v", cmd, line, err)
	}
}

// ours filters a listing down to the test's service.
func ours(t *testing.T, nt *NodeTable, service string) []NodeEndpoint {
	t.Helper()
	all, err := nt.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []NodeEndpoint
	for _, e := range all {
		if e.Service == service {
			out = append(out, e)
		}
	}
	return out
}

// Servers in two network namespaces, each started by its own `ip netns
// exec` (own mount namespace and /sys), register in the one node table,
// which this process (a third namespace, as a client would be) finds by
// id and reads; updates and withdrawals show; a killed server's entry goes
// stale and is swept; a live entry is not taken by another process.
func TestNodeTableAcrossNamespaces(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	service := fmt.Sprintf("test.Node%d/Echo", os.Getpid())
	a := startNodeChild(t, link.A.Host, url.Values{"service": {service}, "addr": {netip.AddrPortFrom(link.A.Addr4, 7000).String()},
		"version": {"v1"}, "zone": {"z1"}, "weight": {"10"}})
	b := startNodeChild(t, link.B.Host, url.Values{"service": {service}, "addr": {netip.AddrPortFrom(link.B.Addr6, 7000).String()},
		"version": {"v2"}, "zone": {"z2"}, "weight": {"20"}})
	if a.table != b.table || a.netns == b.netns {
		t.Fatalf("servers use tables %d and %d from namespaces %d and %d; want one table, two namespaces", a.table, b.table, a.netns, b.netns)
	}
	nt, err := OpenNodeTable(NodeOptions{HeartbeatInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer nt.Close()
	if nt.ID() != a.table {
		t.Fatalf("this process found table %d, the servers use %d", nt.ID(), a.table)
	}
	got := ours(t, nt, service)
	want := []NodeEndpoint{
		{Service: service, Addr: netip.AddrPortFrom(link.A.Addr4, 7000), Version: "v1", Zone: "z1", Weight: 10, Health: NodeServing, NetnsInode: a.netns, PID: uint32(a.pid)},
		{Service: service, Addr: netip.AddrPortFrom(link.B.Addr6, 7000), Version: "v2", Zone: "z2", Weight: 20, Health: NodeServing, NetnsInode: b.netns, PID: uint32(b.pid)},
	}
	if len(got) != 2 {
		t.Fatalf("List = %+v, want 2 endpoints", got)
	}
	for i := range got {
		g := got[i]
		if g.Stale || g.HeartbeatAge < 0 || g.HeartbeatAge > NodeStaleAfter {
			t.Errorf("endpoint %v: stale %v, heartbeat age %v", g.Addr, g.Stale, g.HeartbeatAge)
		}
		g.HeartbeatAge = 0
		if g != want[i] {
			t.Errorf("endpoint %d = %+v, want %+v", i, g, want[i])
		}
	}

	b.do(t, "drain")
	if got := ours(t, nt, service); len(got) != 2 || got[1].Health != NodeDraining || got[0].Health != NodeServing {
		t.Fatalf("after the drain: %+v", got)
	}
	// Another process in A's namespace cannot take A's live entry.
	err = link.A.Host.Do(func() error {
		return nt.Register(NodeEndpoint{Service: service, Addr: netip.AddrPortFrom(link.A.Addr4, 7000)})
	})
	if !errors.Is(err, ErrAddrInUse) || !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("registering over a live entry: %v, want ErrAddrInUse", err)
	}

	a.cmd.Process.Kill()
	a.cmd.Wait()
	waitFor(t, "the killed server's entry to go stale", func() bool {
		got := ours(t, nt, service)
		return len(got) == 2 && got[0].Stale && !got[1].Stale
	})
	if n, err := nt.Sweep(); err != nil || n < 1 {
		t.Fatalf("Sweep = %d, %v; want the killed server's entry", n, err)
	}
	if got := ours(t, nt, service); len(got) != 1 || got[0].Addr.Addr() != link.B.Addr6 {
		t.Fatalf("after Sweep: %+v, want only the live server", got)
	}
	b.do(t, "withdraw")
	if got := ours(t, nt, service); len(got) != 0 {
		t.Fatalf("after the withdrawal: %+v", got)
	}
}

// Processes opening the table at the same moment end up on one table; a
// process's entries vanish with its Close; bad endpoints are refused.
func TestNodeTableConvergesAndValidates(t *testing.T) {
	topo.RequireRoot(t)
	const n = 6
	tables := make([]*NodeTable, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tables[i], errs[i] = OpenNodeTable(NodeOptions{HeartbeatInterval: -1})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		defer tables[i].Close()
	}
	for i := range n {
		if tables[i].ID() != tables[0].ID() {
			t.Fatalf("tables %d and %d opened at once", tables[0].ID(), tables[i].ID())
		}
	}
	service := fmt.Sprintf("test.Conv%d/Echo", os.Getpid())
	addr := netip.MustParseAddrPort("192.0.2.1:7000")
	if err := tables[1].Register(NodeEndpoint{Service: service, Addr: addr, Weight: 5}); err != nil {
		t.Fatal(err)
	}
	if got := ours(t, tables[2], service); len(got) != 1 || got[0].Weight != 5 || got[0].Health != NodeServing {
		t.Fatalf("another handle lists %+v", got)
	}
	if err := tables[2].Update(NodeEndpoint{Service: service, Addr: addr}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update of another handle's entry: %v, want ErrNotFound", err)
	}
	if err := tables[1].Close(); err != nil {
		t.Fatal(err)
	}
	if got := ours(t, tables[2], service); len(got) != 0 {
		t.Fatalf("after its Close the entry is still listed: %+v", got)
	}
	for _, bad := range []NodeEndpoint{
		{Service: "", Addr: addr},
		{Service: string(make([]byte, NodeServiceMax+1)), Addr: addr},
		{Service: service, Addr: netip.AddrPortFrom(addr.Addr(), 0)},
		{Service: service, Addr: addr, Health: 9},
		{Service: service, Addr: addr, Version: string(make([]byte, NodeVersionMax+1))},
	} {
		if err := tables[2].Register(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Register(%+v): %v, want ErrInvalid", bad, err)
		}
	}
}

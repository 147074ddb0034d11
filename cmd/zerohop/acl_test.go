package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// freeTCPAddr returns a loopback address with a port nobody listens on
// right now.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServeInProcess runs serve with args (through goIn, e.g. inside a namespace)
// until the test ends.
func startServeInProcess(t *testing.T, goIn func(func() error) <-chan error, args ...string) (*runtime.Server, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	started := make(chan *runtime.Server, 1)
	exit := make(chan int, 1)
	run := func() error { exit <- serve(ctx, logs, logs, args, started); return nil }
	if goIn != nil {
		goIn(run)
	} else {
		go run()
	}
	t.Cleanup(func() {
		cancel()
		if code := <-exit; code != 0 {
			t.Errorf("serve exited %d:\n%s", code, logs.String())
		}
	})
	select {
	case srv := <-started:
		return srv, logs
	case code := <-exit:
		exit <- code
		t.Fatalf("serve exited %d:\n%s", code, logs.String())
	}
	return nil, nil
}

// gwirCall sends one request from a kernel UDP socket and waits for its
// answer (resending, as a client would).
func gwirCall(t *testing.T, conn *net.UDPConn, id uint64, method string) proto.Frame {
	t.Helper()
	var x proto.ExtBuilder
	x.SetAttempt(0)
	req, err := proto.EncodeRequestExt(make([]byte, 128), id, proto.MethodID(method), 0, &x, []byte{0x08, 0x01})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 20; attempt++ {
		conn.Write(req)
		conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			if f, err := proto.Parse(append([]byte(nil), buf[:n]...)); err == nil && f.RequestID() == id {
				return f
			}
		}
	}
	t.Fatalf("no answer to %s", method)
	return nil
}

func acl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := aclCommand(&out, &errOut, args)
	return out.String() + errOut.String(), code
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serve --policy enforces the file, reloads it when it changes, and
// `zerohop acl --admin` lists, adds, deletes and loads rules of the
// running server.
func TestServePolicyAndACLThroughTheAdminAPI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, "rules:\n  - name: no-sum\n    action: deny\n    services: [zerohop.Echo]\n    methods: [Sum]\n    message: sums are off\n")
	admin, endpoint := freeTCPAddr(t), freeTCPAddr(t)
	srv, logs := startServeInProcess(t, nil, "--addr", "127.0.0.1:0", "--backend", "uring", "--policy", path,
		"--policy-watch", "5ms", "--policy-admin", admin, "--admin", endpoint)
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	status := func(id uint64, method string) string {
		f := gwirCall(t, conn, id, method)
		if f.Status() == proto.StatusOK {
			return "OK"
		}
		return fmt.Sprintf("%v: %s", f.Status(), f.ErrorMessage())
	}
	if s := status(1, echo.SumMethod); s != "DENIED: sums are off" {
		t.Fatalf("Sum under the file's policy: %s", s)
	}
	if s := status(2, echo.EchoMethod); s != "OK" {
		t.Fatalf("Echo: %s", s)
	}
	out, code := acl(t, "list", "--admin", admin)
	if code != 0 || !strings.Contains(out, "no-sum") || !strings.Contains(out, "policy.yaml") {
		t.Fatalf("acl list (exit %d):\n%s", code, out)
	}
	var st policy.Stats
	out, _ = acl(t, "list", "--admin", "http://"+admin+"/", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Rules[0].Hits != 1 {
		t.Fatalf("acl list --json: %v\n%s", err, out)
	}
	// add a rule at the top, then delete it
	out, code = acl(t, "add", "--admin", admin, "--name", "no-echo", "--action", "deny", "--service", "zerohop.Echo", "--method", "Echo", "--message", "echo is off")
	if code != 0 {
		t.Fatalf("acl add (exit %d):\n%s", code, out)
	}
	if s := status(3, echo.EchoMethod); s != "DENIED: echo is off" {
		t.Fatalf("Echo after acl add: %s", s)
	}
	if out, code = acl(t, "del", "--admin", admin, "--name", "no-echo"); code != 0 {
		t.Fatalf("acl del (exit %d):\n%s", code, out)
	}
	if s := status(4, echo.EchoMethod); s != "OK" {
		t.Fatalf("Echo after acl del: %s", s)
	}
	if out, code = acl(t, "del", "--admin", admin, "--name", "no-echo"); code != 1 || !strings.Contains(out, "404") {
		t.Fatalf("deleting a rule that is gone (exit %d):\n%s", code, out)
	}
	// load: a broken file is refused naming its line, a good one replaces
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "rules:\n  - name: x\n    action: maybe\n")
	if out, code = acl(t, "load", "--admin", admin, bad); code != 1 || !strings.Contains(out, "bad.yaml:3:") {
		t.Fatalf("acl load of a broken file (exit %d):\n%s", code, out)
	}
	empty := filepath.Join(dir, "empty.yaml")
	writeFile(t, empty, "# nothing\n")
	if out, code = acl(t, "load", "--admin", admin, empty); code != 0 || !strings.Contains(out, "empty policy") {
		t.Fatalf("acl load of an empty file (exit %d):\n%s", code, out)
	}
	if s := status(5, echo.SumMethod); s != "OK" {
		t.Fatalf("Sum under the empty policy: %s", s)
	}
	// the watched file wins again when it changes
	writeFile(t, path, "rules:\n  - name: no-sum-again\n    action: deny\n    methods: [Sum]\n")
	for i := 0; i < 400 && status(uint64(100+i), echo.SumMethod) == "OK"; i++ {
		time.Sleep(5 * time.Millisecond) // a bound against hangs, not a timing check
	}
	if !strings.Contains(logs.String(), "policy reloaded") {
		t.Errorf("the reload was not logged:\n%s", logs.String())
	}
	if s := status(7, echo.SumMethod); !strings.HasPrefix(s, "DENIED") {
		t.Fatalf("Sum after the file changed: %s\n%s", s, logs.String())
	}
	// The admin endpoint serves the same API under /policy/.
	out, code = acl(t, "list", "--admin", endpoint)
	if code != 0 || !strings.Contains(out, "no-sum-again") {
		t.Fatalf("acl list through serve --admin (exit %d):\n%s", code, out)
	}
	if out, code = acl(t, "list", "--admin", admin, "--iface", "lo"); code != 2 || !strings.Contains(out, "exclude") {
		t.Fatalf("acl list with --admin and --iface: exit %d\n%s", code, out)
	}
}

// A server without a policy has no policy API: acl says which flag
// gives it one.
func TestACLOnAServerWithoutPolicy(t *testing.T) {
	endpoint := freeTCPAddr(t)
	startServeInProcess(t, nil, "--addr", "127.0.0.1:0", "--backend", "uring", "--admin", endpoint)
	out, code := acl(t, "list", "--admin", endpoint)
	if code != 1 || !strings.Contains(out, "no policy API") || !strings.Contains(out, "--policy FILE") {
		t.Fatalf("acl list on a server without a policy (exit %d):\n%s", code, out)
	}
}

func TestServeRefusesABrokenPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, "default: deny\nrules:\n  - name: a\n    action: allow\n    sources: [10.0.0.1/8]\n")
	var logs syncBuffer
	code := serve(context.Background(), &logs, &logs, []string{"--addr", "127.0.0.1:0", "--backend", "uring", "--policy", path}, nil)
	if code != 2 || !strings.Contains(logs.String(), "--policy") || !strings.Contains(logs.String(), "policy.yaml:5:") {
		t.Fatalf("serve with a broken policy exited %d:\n%s", code, logs.String())
	}
}

// An AF_XDP server with a policy in one namespace; the CLI run by
// `ip netns exec` (its own mount namespace, its own /sys and bpffs, so no
// pin is visible to it) finds the XDP ACL through the interface, shows
// the drops the policy's rule caused, and edits entries; through the
// admin API it shows the drops per rule.
func TestACLAcrossMountNamespaces(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	b4 := link.B.Addr4.As4()
	b4[3] ^= 0x80 // another host of the client's /24
	blocked := netip.AddrFrom4(b4)
	if out, err := exec.Command("ip", "-n", link.B.Host.Name, "addr", "add", netip.PrefixFrom(blocked, 24).String(), "dev", link.B.Iface).CombinedOutput(); err != nil {
		t.Fatalf("adding %v: %v: %s", blocked, err, out)
	}
	const port = 7200
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, fmt.Sprintf("rules:\n  - name: blocked-host\n    action: deny\n    sources: [%v]\n", blocked))
	admin := "127.0.0.1:9977"
	addr := netip.AddrPortFrom(link.A.Addr4, port)
	startServeInProcess(t, link.A.Host.Go, "--addr", addr.String(), "--backend", "xsk", "--iface", link.A.Iface,
		"--policy", path, "--policy-admin", admin)
	var conn, blockedConn *net.UDPConn
	if err := link.B.Host.Do(func() (err error) {
		if conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr)); err != nil {
			return err
		}
		blockedConn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(blocked, 0)), net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer blockedConn.Close()
	const n = 6
	req, _ := proto.EncodeRequest(make([]byte, 64), 1, proto.MethodID(echo.EchoMethod), 0, nil)
	for range n {
		blockedConn.Write(req)
	}
	if f := gwirCall(t, conn, 2, echo.EchoMethod); f.Status() != proto.StatusOK {
		t.Fatalf("allowed client: %v", f.Status())
	}
	cli := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := link.A.Host.Command(ctx, os.Args[0], args...)
		cmd.Env = append(os.Environ(), benchChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ip netns exec … zerohop %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var entries []policy.XDPEntry
	out := cli("acl", "list", "--iface", link.A.Iface, "--json")
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(entries) != 1 || entries[0].Source != blocked.String()+"/32" || entries[0].Port != port || entries[0].Hits != n {
		t.Fatalf("XDP entries seen from another mount namespace: %+v, want %v/32 on %d with %d hits", entries, blocked, port, n)
	}
	out = cli("acl", "list", "--admin", admin)
	if row := rowWith(out, "blocked-host"); len(row) != 6 || row[5] != fmt.Sprint(n) || row[4] != "0" {
		t.Fatalf("acl list --admin does not show %d XDP drops for blocked-host:\n%s", n, out)
	}
	// Edit the ACL from the other mount namespace; the server's namespace
	// sees it in the same maps.
	cli("acl", "add", "--iface", link.A.Iface, "--source", "198.51.100.0/24", "--port", "7300")
	var maps *bpf.Maps
	if err := link.A.Host.Do(func() (err error) { maps, err = bpf.OpenAttached(link.A.Iface); return err }); err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	has := func() bool {
		rules, err := maps.ACLRules()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.Source == netip.MustParsePrefix("198.51.100.0/24") && r.Port == 7300 && r.Action == bpf.Deny {
				return true
			}
		}
		return false
	}
	if !has() {
		t.Fatal("the entry added from another mount namespace is not in the maps")
	}
	cli("acl", "del", "--iface", link.A.Iface, "--source", "198.51.100.0/24", "--port", "7300")
	if has() {
		t.Fatal("the entry deleted from another mount namespace is still there")
	}
	// load --iface: the file's source rules for another port
	other := filepath.Join(t.TempDir(), "other.yaml")
	writeFile(t, other, "rules:\n  - action: deny\n    sources: [203.0.113.0/24]\n")
	if out := cli("acl", "load", "--iface", link.A.Iface, "--port", "7400", other); !strings.Contains(out, "1 entries") {
		t.Fatalf("acl load --iface: %s", out)
	}
}

// rowWith returns the fields of the first line of a table holding word.
func rowWith(table, word string) []string {
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == word {
			return f
		}
	}
	return nil
}

package policy_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

const callBound = 5 * time.Second // a bound against hangs, not a timing check

func expect(t *testing.T, f proto.Frame, what string, status proto.Status, msg string) {
	t.Helper()
	if f == nil {
		t.Fatalf("%s: no answer", what)
	}
	if f.Status() != status || (msg != "" && string(f.ErrorMessage()) != msg) {
		t.Fatalf("%s: %v %q, want %v %q", what, f.Status(), f.ErrorMessage(), status, msg)
	}
}

// Per-method rules on the io_uring backend: a caller the policy denies
// gets DENIED with the rule's message, before a blocking method takes a
// worker; the same caller's other calls and other callers' calls are
// served.
func TestAuthorizationOnUring(t *testing.T) {
	pol := newPolicy(t, policy.ServerConfig{Loops: 1})
	srv := startServer(t, nil, loopback().String(), pol, runtime.WithBackend(runtime.BackendUring))
	rep, err := pol.Load(mustParse(t, `rules:
  - name: no-sum-for-evil
    action: deny
    callers: [evil]
    services: [zerohop.Echo]
    methods: [Sum]
    message: evil may not sum
  - name: no-slow-for-evil
    action: deny
    callers: [evil]
    services: [test.Slow]
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) > 0 {
		t.Fatalf("warnings %q", rep.Warnings)
	}
	c := dial(t, nil, netip.Addr{}, srv.Addr())
	expect(t, c.call(1, echo.SumMethod, "evil", callBound), "evil Sum", proto.StatusDenied, "evil may not sum")
	expect(t, c.call(2, echo.EchoMethod, "evil", callBound), "evil Echo", proto.StatusOK, "")
	expect(t, c.call(3, echo.SumMethod, "good", callBound), "good Sum", proto.StatusOK, "")
	expect(t, c.call(4, echo.SumMethod, "", callBound), "anonymous Sum", proto.StatusOK, "")
	expect(t, c.call(5, slowMethod, "evil", callBound), "evil Slow", proto.StatusDenied, `denied by rule "no-slow-for-evil"`)
	expect(t, c.call(6, slowMethod, "good", callBound), "good Slow", proto.StatusOK, "")
	if st := srv.Stats(); st.Total.Blocking != 1 {
		t.Errorf("%d blocking calls reached the worker pool, want only the allowed one", st.Total.Blocking)
	}
	st := pol.Stats()
	if st.Rules[0].Hits != 1 || st.Rules[1].Hits != 1 {
		t.Errorf("rule hits %+v, want one each", st.Rules)
	}
}

// Both paths of an AF_XDP server between namespaces: a source every
// method denies is dropped by the XDP ACL, counted for its rule; a rule
// on one method answers DENIED from the middleware on the AF_XDP path and
// on the server's kernel sockets (a caller in the server's own namespace
// goes over loopback and never meets XDP).
func TestAuthorizationOnXSK(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	// A second address on the client side, for the source the policy
	// blocks altogether.
	b4 := link.B.Addr4.As4()
	b4[3] ^= 0x80 // another host of the same /24 (topo numbers its hosts .1 and .2)
	blocked := netip.AddrFrom4(b4)
	if out, err := exec.Command("ip", "-n", link.B.Host.Name, "addr", "add", netip.PrefixFrom(blocked, 24).String(), "dev", link.B.Iface).CombinedOutput(); err != nil {
		t.Fatalf("adding %v on %s: %v: %s", blocked, link.B.Iface, err, out)
	}
	const port = 7100
	addr := netip.AddrPortFrom(link.A.Addr4, port)
	pol := newPolicy(t, policy.ServerConfig{Loops: 1})
	srv := startServer(t, link.A.Host.Do, addr.String(), pol, runtime.WithBackend(runtime.BackendXSK))
	var maps *bpf.Maps
	if err := link.A.Host.Do(func() (err error) {
		maps, err = bpf.OpenAttached(link.A.Iface)
		return err
	}); err != nil {
		t.Fatalf("finding the steering program's maps on %s: %v", link.A.Iface, err)
	}
	t.Cleanup(func() { maps.Close() })
	if res := pol.AttachACL(maps, port); res.Err != nil || res.Entries != 0 {
		t.Fatalf("attaching the ACL with the empty policy: %+v", res)
	}
	rep, err := pol.Load(mustParse(t, fmt.Sprintf(`rules:
  - name: blocked-host
    action: deny
    sources: [%v]
  - name: no-sum-here
    action: deny
    sources: [%v, %v]
    services: [zerohop.Echo]
    methods: [Sum]
    message: no sums from here
`, blocked, link.B.Addr4, link.A.Addr4)), "test")
	if err != nil {
		t.Fatal(err)
	}
	if rep.ACL == nil || rep.ACL.Err != nil || rep.ACL.Entries != 1 {
		t.Fatalf("ACL update %+v, want the blocked host's one entry", rep.ACL)
	}
	// AF_XDP path, from the client namespace.
	c := dial(t, link.B.Host.Do, link.B.Addr4, addr)
	expect(t, c.call(1, echo.EchoMethod, "", callBound), "Echo over AF_XDP", proto.StatusOK, "")
	expect(t, c.call(2, echo.SumMethod, "", callBound), "Sum over AF_XDP", proto.StatusDenied, "no sums from here")
	if n := srv.Stats().Total.Served["xsk"]; n != 2 {
		t.Fatalf("%d requests served over AF_XDP, want both", n)
	}
	// Kernel-socket path, from the server's own namespace.
	local := dial(t, link.A.Host.Do, link.A.Addr4, addr)
	expect(t, local.call(3, echo.EchoMethod, "", callBound), "local Echo", proto.StatusOK, "")
	expect(t, local.call(4, echo.SumMethod, "", callBound), "local Sum", proto.StatusDenied, "no sums from here")
	if n := srv.Stats().Total.Served["udp"]; n != 2 {
		t.Fatalf("%d requests served over kernel sockets, want the two local ones", n)
	}
	// The blocked host: dropped in the kernel, counted for its rule. The
	// client's next call, answered, shows the earlier datagrams were seen.
	b := dial(t, link.B.Host.Do, blocked, addr)
	const n = 7
	for i := range n {
		b.send(request(uint64(100+i), echo.EchoMethod, "", nil))
	}
	expect(t, c.call(5, echo.EchoMethod, "", callBound), "Echo after the blocked host's calls", proto.StatusOK, "")
	if f := b.recv(100 * time.Millisecond); f != nil {
		t.Fatalf("the blocked host got an answer: %v", f.Status())
	}
	st := pol.Stats()
	if st.Rules[0].Name != "blocked-host" || st.Rules[0].XDPDrops != n || st.Rules[0].Hits != 0 {
		t.Fatalf("blocked-host %+v, want %d XDP drops and no call reaching the middleware", st.Rules[0], n)
	}
	if st.Rules[1].Hits != 2 || st.Rules[1].XDPDrops != 0 {
		t.Fatalf("no-sum-here %+v, want 2 middleware denials", st.Rules[1])
	}
	if len(st.XDP) != 1 || st.XDP[0].Hits != n || st.XDP[0].Action != "deny" {
		t.Fatalf("XDP entries %+v", st.XDP)
	}
	// Detaching leaves nothing for the port behind.
	if res := pol.DetachACL(); res.Err != nil || res.Removed != 1 {
		t.Fatalf("DetachACL: %+v", res)
	}
	acl, err := maps.ACLRules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range acl {
		if r.Port == port {
			t.Fatalf("entry %+v left after DetachACL", r)
		}
	}
}

// The policy file is rewritten every few milliseconds while calls flow:
// every call is answered, each by one policy or the other (never DENIED
// where both allow it), and both policies are seen deciding.
func TestReloadUnderLoadLosesNoCall(t *testing.T) {
	const (
		allowSum = "rules:\n  - name: sum\n    action: allow\n    methods: [Sum]\n"
		denySum  = "rules:\n  - name: sum\n    action: deny\n    methods: [Sum]\n    message: sums off\n"
	)
	pol := newPolicy(t, policy.ServerConfig{Loops: 1})
	srv := startServer(t, nil, loopback().String(), pol, runtime.WithBackend(runtime.BackendUring))
	path := tempPolicy(t, allowSum)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	loads, refused := 0, 0
	done := make(chan error, 1)
	go func() {
		done <- pol.Watch(ctx, path, time.Millisecond, func(ev policy.WatchEvent) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Err != nil {
				refused++
			} else {
				loads++
			}
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	c := dial(t, nil, netip.Addr{}, srv.Addr())
	k := collect(c)
	sent := map[uint64]string{}
	stop := make(chan struct{})
	writer := make(chan int)
	go func() {
		i := 0
		for {
			select {
			case <-stop:
				writer <- i
				return
			default:
			}
			text := allowSum
			if i%2 == 1 {
				text = denySum
			}
			tmp := fmt.Sprintf("%s.%d", path, i)
			if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
				t.Error(err)
			} else if err := os.Rename(tmp, path); err != nil {
				t.Error(err)
			}
			i++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	id := uint64(0)
	for range 1500 {
		for _, m := range []string{echo.EchoMethod, echo.SumMethod} {
			id++
			c.send(request(id, m, "", []byte{0x08, 0x01}))
			sent[id] = m
		}
		time.Sleep(500 * time.Microsecond)
	}
	close(stop)
	writes := <-writer
	got := k.wait(len(sent))
	var missing, echoBad, sumOK, sumDenied int
	for i, m := range sent {
		r, ok := got[i]
		switch {
		case !ok:
			missing++
		case m == echo.EchoMethod && r.status != proto.StatusOK:
			echoBad++
		case m == echo.SumMethod && r.status == proto.StatusOK:
			sumOK++
		case m == echo.SumMethod && r.status == proto.StatusDenied && r.msg == "sums off":
			sumDenied++
		case m == echo.SumMethod:
			t.Errorf("Sum %d: %v %q", i, r.status, r.msg)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls, %d file writes, %d policies loaded, %d refused; Sum allowed %d times and denied %d times",
		len(sent), writes, loads, refused, sumOK, sumDenied)
	if missing > 0 || echoBad > 0 {
		t.Errorf("%d calls unanswered, %d Echo calls not OK", missing, echoBad)
	}
	if loads < 10 || refused > 0 || sumOK == 0 || sumDenied == 0 {
		t.Errorf("want many reloads, none refused, and both policies seen deciding")
	}
	if !strings.Contains(pol.Report().Source, "policy.yaml") {
		t.Errorf("source %q", pol.Report().Source)
	}
}

package authz

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// Two policies that disagree on every probe below: A denies the lab and
// allows the rest, B the other way round.
const (
	policyA = "default: allow\nrules:\n  - name: a\n    action: deny\n    sources: [10.9.0.0/16]\n"
	policyB = "default: deny\nrules:\n  - name: b\n    action: allow\n    sources: [10.9.0.0/16]\n"
	broken  = "default: deny\nrules:\n  - name: b\n    action: allow\n    sources: [10.9.0.0/16\n"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	// write and rename, as editors and config managers do
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Loops keep matching while the file is rewritten and reloaded: every
// decision is wholly A's or wholly B's, both are seen, a broken file
// changes nothing, and the race detector sees no unsynchronized access.
func TestReloadUnderConcurrentMatch(t *testing.T) {
	const loops = 4
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyA)
	e, err := NewEngine(loops, shopMethods)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	id := proto.MethodID("shop.Cart/Get")
	lab, other := netip.MustParseAddr("10.9.1.1"), netip.MustParseAddr("10.1.1.1")
	stop := make(chan struct{})
	var sawA, sawB, bad atomic.Int64
	var wg sync.WaitGroup
	for l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// one policy per call: read it once, as the middleware will
				p := e.Policy()
				labAllow, labRule, _ := p.Match(l, id, lab, nil, nil)
				otherAllow, otherRule, _ := p.Match(l, id, other, nil, nil)
				switch {
				case !labAllow && labRule == 0 && otherAllow && otherRule == -1:
					sawA.Add(1)
				case labAllow && labRule == 0 && !otherAllow && otherRule == -1:
					sawB.Add(1)
				default:
					bad.Add(1)
				}
				// and through the engine, one call at a time
				if allow, rule, _ := e.Match(l, id, lab, nil, nil); rule != 0 || allow != (p.spec.Default == Deny) && e.Policy() == p {
					bad.Add(1)
				}
			}
		}()
	}
	for i := range 200 {
		text := policyA
		if i%2 == 1 {
			text = policyB
		}
		writeFile(t, path, text)
		if _, err := e.LoadFile(path); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			before := e.Policy()
			writeFile(t, path, broken)
			if _, err := e.LoadFile(path); err == nil || !strings.Contains(err.Error(), ":5:") {
				t.Fatalf("broken file: %v", err)
			}
			if e.Policy() != before {
				t.Fatal("the broken file replaced the policy")
			}
		}
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || sawA.Load() == 0 || sawB.Load() == 0 {
		t.Fatalf("decisions: %d wholly A, %d wholly B, %d mixed or wrong", sawA.Load(), sawB.Load(), bad.Load())
	}
	t.Logf("%d decisions under A, %d under B, none mixed", sawA.Load(), sawB.Load())
}

func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyA)
	e, err := NewEngine(1, shopMethods)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan WatchEvent, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, path, 5*time.Millisecond, func(ev WatchEvent) { events <- ev }) }()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Watch returned %v", err)
		}
	}()
	next := func(what string) WatchEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second): // a bound against hangs, not a timing check
			t.Fatalf("no event after %s", what)
		}
		return WatchEvent{}
	}
	lab := netip.MustParseAddr("10.9.1.1")
	id := proto.MethodID("shop.Cart/Get")
	if ev := next("start"); ev.Err != nil || ev.Report.Default != Allow {
		t.Fatalf("first load: %+v", ev)
	}
	writeFile(t, path, policyB)
	if ev := next("rewrite"); ev.Err != nil || ev.Report.Default != Deny {
		t.Fatalf("reload: %+v", ev)
	}
	if allow, _, _ := e.Match(0, id, lab, nil, nil); !allow {
		t.Fatal("policy B not in force")
	}
	writeFile(t, path, broken)
	ev := next("broken")
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "policy.yaml:5:") {
		t.Fatalf("broken file: %+v", ev)
	}
	if allow, _, _ := e.Match(0, id, lab, nil, nil); !allow {
		t.Fatal("the broken file changed the policy")
	}
	writeFile(t, path, "")
	if ev := next("emptied"); ev.Err != nil || !ev.Report.Empty {
		t.Fatalf("empty file: %+v", ev)
	}
	os.Remove(path)
	if ev := next("removed"); ev.Err == nil {
		t.Fatalf("removed file: %+v", ev)
	}
	writeFile(t, path, policyA)
	if ev := next("restored"); ev.Err != nil || ev.Report.Rules != 1 {
		t.Fatalf("restored: %+v", ev)
	}
	select {
	case ev := <-events:
		t.Fatalf("an event without a change: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// FuzzParse: Parse never panics, and a policy it accepts survives Marshal
// and Parse unchanged (the YAML library's encoder is the reference for
// what the parser reads).
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/shop.yaml", "testdata/policy.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(policyA))
	f.Add([]byte(broken))
	f.Add([]byte("rules:\n  - action: deny\n    sources: 10.1.2.3\n    callers: one\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse("fuzz", data)
		if err != nil {
			if fe, ok := err.(*FileError); !ok || fe.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		out, err := Marshal(spec)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse("again", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(spec)): %v\n%s", err, out)
		}
		if a, b := fmt.Sprint(withoutLines(spec)), fmt.Sprint(withoutLines(back)); a != b {
			t.Fatalf("round trip changed the policy:\n%s\n%s", a, b)
		}
		if _, err := Compile(spec, shopMethods, 1); err != nil {
			t.Fatalf("Parse accepted what Compile refuses: %v", err)
		}
	})
}

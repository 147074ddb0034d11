package static_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh/discovery/internal/conntest"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

// wait bounds every wait of these tests; a resolver polling every 10 ms
// that needs longer is broken.
const wait = 5 * time.Second

var addrsAre = conntest.AddrsAre

// watchFile writes content to a new file and starts a resolver polling it
// at interval, once its first state came.
func watchFile(t *testing.T, content string, interval time.Duration) (string, *static.FileBuilder, *conntest.Recorder, runtime.Resolver) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "eps")
	writeFile(t, path, content)
	b := static.File(path, static.WithInterval(interval))
	rec, r := conntest.Build(t, b, "pkg.Service")
	rec.Wait(t, wait, "the first content", func(s conntest.Snapshot) bool { return len(s.States) == 1 })
	return path, b, rec, r
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// A new file renamed over the old one, as editors and ConfigMap
	// volumes replace files: the watcher sees the new inode.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitStats polls b's counters, bounded, until cond holds.
func waitStats(t *testing.T, b *static.FileBuilder, what string, cond func(static.FileStats) bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !cond(b.Stats()); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %+v", wait, what, b.Stats())
		}
	}
}

func TestListPushesItsEndpoints(t *testing.T) {
	b := static.New(
		runtime.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.2:7000"), Weight: 2},
		runtime.Endpoint{Addr: netip.MustParseAddrPort("[fd00::1]:7000")},
	)
	rec, _ := conntest.Build(t, b, "pkg.Service")
	rec.Wait(t, wait, "the list", addrsAre("10.0.0.2:7000", "[fd00::1]:7000"))
	if got := rec.Snapshot().States[0].Endpoints[0].Weight; got != 2 {
		t.Fatalf("weight %d, want 2", got)
	}
	if st := b.Stats(); st.Updates != 1 {
		t.Fatalf("stats %+v, want 1 update", st)
	}
}

func TestListRefusesRepeatedAddress(t *testing.T) {
	a := runtime.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.2:7000")}
	if _, err := static.New(a, a).Build("pkg.Service", conntest.New()); err == nil || !strings.Contains(err.Error(), "repeats") {
		t.Fatalf("Build of a list with a repeated address: %v", err)
	}
}

func TestFileBuildFailsNamingFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eps")
	if _, err := static.File(path).Build("pkg.Service", conntest.New()); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "static.File") {
		t.Fatalf("Build on a missing file: %v", err)
	}
	writeFile(t, path, "10.0.0.1:1\n10.0.0.2:1 weight=x\n")
	_, err := static.File(path).Build("pkg.Service", conntest.New())
	var pe *static.ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("Build on a bad file: %v, want a ParseError for line 2", err)
	}
}

func TestFileChangesArePushed(t *testing.T) {
	path, _, rec, _ := watchFile(t, "10.0.0.1:7000 zone=a\n", 10*time.Millisecond)

	writeFile(t, path, "10.0.0.1:7000 zone=a\n10.0.0.2:7000 weight=5\n")
	took := rec.Wait(t, wait, "the added endpoint", addrsAre("10.0.0.1:7000", "10.0.0.2:7000"))
	t.Logf("an added endpoint was pushed %v after the file was replaced (interval 10ms)", took)

	// Written in place (same inode), not renamed.
	if err := os.WriteFile(path, []byte("10.0.0.2:7000 weight=5 health=draining\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the in-place edit", addrsAre("10.0.0.2:7000"))
	last, _ := rec.Snapshot().Last()
	if ep := last.Endpoints[0]; ep.Weight != 5 || ep.Health != runtime.HealthDraining {
		t.Fatalf("endpoint %+v, want weight 5 and draining", ep)
	}

	writeFile(t, path, "# nothing serves now\n")
	rec.Wait(t, wait, "the emptied file", func(s conntest.Snapshot) bool {
		last, ok := s.Last()
		return ok && len(last.Endpoints) == 0
	})
	if len(rec.Snapshot().Errors) != 0 {
		t.Fatalf("errors reported for good files: %v", rec.Snapshot().Errors)
	}
}

func TestFileTouchWithoutChangeIsNotPushed(t *testing.T) {
	path, b, rec, _ := watchFile(t, "10.0.0.1:7000\n", 10*time.Millisecond)
	// Same content, new inode and mtime: read again, not pushed again.
	writeFile(t, path, "10.0.0.1:7000\n")
	waitStats(t, b, "a second read", func(st static.FileStats) bool { return st.Reads >= 2 })
	if n := len(rec.Snapshot().States); n != 1 {
		t.Fatalf("%d states pushed for one content", n)
	}
}

func TestFileBadEditReportsLineAndKeepsState(t *testing.T) {
	path, _, rec, _ := watchFile(t, "10.0.0.1:7000\n", 10*time.Millisecond)

	writeFile(t, path, "10.0.0.1:7000\n10.0.0.2:7000 health=sick\n")
	rec.Wait(t, wait, "an error", func(s conntest.Snapshot) bool { return len(s.Errors) == 1 })
	var pe *static.ParseError
	if err := rec.Snapshot().Errors[0]; !errors.As(err, &pe) || pe.Line != 2 {
		t.Fatalf("reported %v, want a ParseError naming line 2", err)
	}
	if n := len(rec.Snapshot().States); n != 1 {
		t.Fatalf("a bad file pushed a state (%d states)", n)
	}

	// A second, different bad edit is reported too.
	writeFile(t, path, "10.0.0.1:7000 weight=z\n")
	rec.Wait(t, wait, "a second error", func(s conntest.Snapshot) bool { return len(s.Errors) == 2 })

	// Back to the very content of before: pushed again, the client was
	// told of an error and waits for an update.
	writeFile(t, path, "10.0.0.1:7000\n")
	rec.Wait(t, wait, "the repaired file", func(s conntest.Snapshot) bool { return len(s.States) == 2 })
	if got := rec.Snapshot().LastAddrs(); !slices.Equal(got, []string{"10.0.0.1:7000"}) {
		t.Fatalf("after repair: %v", got)
	}
}

func TestFileRemovedIsReportedOnceAndComesBack(t *testing.T) {
	path, b, rec, _ := watchFile(t, "10.0.0.1:7000\n", 10*time.Millisecond)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the removal reported", func(s conntest.Snapshot) bool { return len(s.Errors) == 1 })
	if err := rec.Snapshot().Errors[0]; !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reported %v, want ErrNotExist", err)
	}
	// Let several more ticks fail: still one report.
	waitStats(t, b, "5 more failed looks", func(st static.FileStats) bool { return st.Errors >= 6 })
	if n := len(rec.Snapshot().Errors); n != 1 {
		t.Fatalf("a missing file was reported %d times", n)
	}
	writeFile(t, path, "10.0.0.1:7000\n")
	rec.Wait(t, wait, "the file back", func(s conntest.Snapshot) bool { return len(s.States) == 2 })
}

func TestResolveNowReadsAtOnce(t *testing.T) {
	// An interval no test waits for: only ResolveNow can read the change.
	path, _, rec, r := watchFile(t, "10.0.0.1:7000\n", time.Hour)
	writeFile(t, path, "10.0.0.3:7000\n")
	r.ResolveNow()
	rec.Wait(t, wait, "the change after ResolveNow", addrsAre("10.0.0.3:7000"))
}

func TestCloseStopsUpdates(t *testing.T) {
	path, b, rec, r := watchFile(t, "10.0.0.1:7000\n", time.Millisecond)
	r.Close()
	r.Close() // twice is fine
	before, reads := len(rec.Snapshot().States), b.Stats().Reads
	writeFile(t, path, "10.0.0.2:7000\n")
	time.Sleep(50 * time.Millisecond) // 50 intervals: a running watch would have read and pushed
	if n := len(rec.Snapshot().States); n != before || b.Stats().Reads != reads {
		t.Fatalf("after Close: %d states pushed, %d reads", n-before, b.Stats().Reads-reads)
	}
}

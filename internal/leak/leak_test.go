package leak

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDescribeReportsTrackedAndUntrackedDescriptors(t *testing.T) {
	enabled.Store(true)
	defer enabled.Store(false)
	before := openFDs()

	tracked, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	Track(int(tracked.Fd()))
	untracked, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	report := describe(before)
	if !strings.Contains(report, "/dev/null") || !strings.Contains(report, "opened at:") || !strings.Contains(report, "TestDescribe") {
		t.Errorf("tracked descriptor not reported with its stack:\n%s", report)
	}
	if !strings.Contains(report, "status") {
		t.Errorf("untracked descriptor not reported:\n%s", report)
	}

	Untrack(int(tracked.Fd()))
	tracked.Close()
	untracked.Close()
	if report := describe(before); report != "" {
		t.Errorf("closed descriptors still reported:\n%s", report)
	}
}

func TestTrackIsOffUntilEnabled(t *testing.T) {
	Track(12345)
	mu.Lock()
	_, ok := opened[12345]
	mu.Unlock()
	if ok {
		t.Fatal("Track recorded a descriptor while disabled")
	}
}

func TestGoroutinesCountsMatchingStacks(t *testing.T) {
	stop := make(chan struct{})
	go parkForLeakTest(stop)
	// The goroutine may not have started yet: wait (bounded) for it.
	n := 0
	for i := 0; i < 1000 && n != 1; i++ {
		n = Goroutines("parkForLeakTest")
		time.Sleep(time.Millisecond)
	}
	if n != 1 {
		t.Errorf("Goroutines = %d, want 1", n)
	}
	close(stop)
}

func parkForLeakTest(stop chan struct{}) { <-stop }

// Production code calls Track and Untrack, so this package ends up in the
// zerohop binary; package testing must not come with it (nor through any
// other package the binary links).
func TestZerohopBinaryDoesNotLinkTesting(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", "github.com/zerohop/zerohop/cmd/zerohop").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	for _, d := range deps {
		if d == "testing" || strings.HasPrefix(d, "testing/") {
			t.Errorf("cmd/zerohop links %s", d)
		}
	}
}

// Main accepts *testing.M through its Runner interface.
var _ Runner = (*testing.M)(nil)

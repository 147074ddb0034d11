package httpmigrate_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	zrt "github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

// start builds pkg, runs it with args and returns it with the first
// submatch of ready in its log.
func start(t *testing.T, ctx context.Context, pkg string, ready *regexp.Regexp, args ...string) (*exec.Cmd, []string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(logs)
	for sc.Scan() {
		if m := ready.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, logs)
			return cmd, m[1:]
		}
	}
	t.Fatalf("%s never said it was ready", pkg)
	return nil, nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0", err)
	}
}

func TestBefore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, m := start(t, ctx, "./before", regexp.MustCompile(`serving HTTP on (\S+)`), "--http", "127.0.0.1:0")
	if code, body := get(t, "http://"+m[0]+"/greet?name=ada"); code != 200 || body != "hello, ada" {
		t.Errorf("/greet: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+m[0]+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	stop(t, cmd)
}

// The migrated service answers the same greeting over GWIR and keeps its
// HTTP health endpoint; SIGTERM drains and exits 0.
func TestAfter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, m := start(t, ctx, "./after", regexp.MustCompile(`serving \S+ on (\S+) .* health on (\S+)`), "--addr", "127.0.0.1:0", "--http", "127.0.0.1:0")
	addr, health := m[0], m[1]
	if code, body := get(t, health); code != 200 || body != "serving uring\n" {
		t.Errorf("%s: %d %q", health, code, body)
	}
	c, err := zrt.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "ada")
	reply, err := c.Call(ctx, "greeter.Greeter/Greet", req, nil)
	want := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "hello, ada")
	if err != nil || string(reply.Payload) != string(want) {
		t.Errorf("Greet: % x, %v; want % x", reply.Payload, err, want)
	}
	stop(t, cmd)
}

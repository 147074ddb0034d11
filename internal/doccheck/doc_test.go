package doccheck

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/modtest"
	gwir "github.com/zerohop/zerohop/proto"
	zrt "github.com/zerohop/zerohop/runtime"
)

// fragmentImports are the packages a fragment may use by these names.
var fragmentImports = map[string]string{
	"context": "context", "errors": "errors", "fmt": "fmt", "log": "log", "os": "os",
	"signal": "os/signal", "syscall": "syscall", "time": "time",
	"zrt":   "github.com/zerohop/zerohop/runtime",
	"gwir":  "github.com/zerohop/zerohop/proto",
	"typed": "github.com/zerohop/zerohop/typed",
	"echo":  "github.com/zerohop/zerohop/examples/echo",
	"kvpb":  "github.com/zerohop/zerohop/examples/kv/kvpb",
}

// markdownFiles are the Markdown files whose ```go blocks must build.
// docs/protocol.md and docs/runtime.md are not among them yet: their
// blocks are excerpts that use names they do not define.
var markdownFiles = []string{"README.md", "docs/typed.md", "examples/*/README.md"}

type block struct {
	file string // Markdown file, relative to the module root
	line int    // where the block starts
	code string
}

// goBlocks returns the ```go blocks of the project's Markdown.
func goBlocks(t *testing.T, root string) []block {
	t.Helper()
	var files []string
	for _, pattern := range markdownFiles {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		files = append(files, m...)
	}
	var out []block
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		var cur *block
		for i, line := range strings.Split(string(data), "\n") {
			switch {
			case cur == nil && strings.TrimSpace(line) == "```go":
				cur = &block{file: rel, line: i + 1}
			case cur != nil && strings.TrimSpace(line) == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.code += line + "\n"
			}
		}
		if cur != nil {
			t.Errorf("%s:%d: unterminated ```go block", rel, cur.line)
		}
	}
	return out
}

// asFile returns the block as a Go file of package main.
func asFile(b block) string {
	if strings.HasPrefix(strings.TrimSpace(stripComments(b.code)), "package ") {
		return b.code
	}
	imports := map[string]bool{`"context"`: true}
	for name, path := range fragmentImports {
		if name != "context" && regexp.MustCompile(`\b`+name+`\.`).MatchString(b.code) {
			imports[fmt.Sprintf("%s %q", name, path)] = true
		}
	}
	var list []string
	for imp := range imports {
		list = append(list, imp)
	}
	sort.Strings(list)
	return "package main\n\nimport (\n\t" + strings.Join(list, "\n\t") +
		"\n)\n\nvar ctx = context.Background()\n\nfunc main() {\n" + b.code + "}\n"
}

// stripComments drops comment lines, so a file may open with a comment.
func stripComments(code string) string {
	var keep []string
	for _, l := range strings.Split(code, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "//") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func blockDir(i int) string { return fmt.Sprintf("block%02d", i) }

// TestMarkdownGoBuilds builds and vets every block, each as its own main
// package; a failure names the Markdown file and line.
func TestMarkdownGoBuilds(t *testing.T) {
	root := modtest.Root(t)
	blocks := goBlocks(t, root)
	if len(blocks) < 3 {
		t.Fatalf("found %d ```go blocks; README.md alone has two, examples/echo/README.md one", len(blocks))
	}
	files := map[string]string{}
	for i, b := range blocks {
		files[blockDir(i)+"/main.go"] = asFile(b)
	}
	dir := modtest.Module(t, "example.com/doccheck", files)
	if out, err := modtest.GoErr(dir, "vet", "./..."); err != nil {
		for i, b := range blocks {
			if strings.Contains(out, blockDir(i)) {
				t.Errorf("the ```go block at %s:%d does not build:\n%s", b.file, b.line, files[blockDir(i)+"/main.go"])
			}
		}
		t.Fatalf("go vet:\n%s", out)
	}
}

// TestReadmeServerRuns runs the README's server: it serves Echo, answers
// an empty request with the application status, and exits 0 on SIGINT.
func TestReadmeServerRuns(t *testing.T) {
	root := modtest.Root(t)
	var server *block
	for _, b := range goBlocks(t, root) {
		if b.file == "README.md" && strings.Contains(b.code, "package main") && strings.Contains(b.code, "zrt.Listen") {
			server = &b
			break
		}
	}
	if server == nil {
		t.Fatal("README.md has no server program (a ```go block with package main and zrt.Listen)")
	}
	dir := modtest.Module(t, "example.com/readme", map[string]string{"main.go": server.code})
	bin := filepath.Join(dir, "server")
	modtest.Go(t, dir, "build", "-o", bin, ".")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--addr", "127.0.0.1:0")
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(logs)
	serving := regexp.MustCompile(`serving on (\S+) `)
	addr := ""
	for addr == "" && sc.Scan() {
		if m := serving.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("the README's server never said where it serves")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	c, err := zrt.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Call(ctx, "zerohop.Echo/Echo", []byte("\x0a\x02hi"), nil); err != nil || string(r.Payload) != "\x0a\x02hi" {
		t.Errorf("Echo: %q, %v", r.Payload, err)
	}
	if _, err := c.Call(ctx, "zerohop.Echo/Echo", nil, nil); !errorsIsStatus(err, gwir.StatusApplication) {
		t.Errorf("empty Echo: %v, want APP(16)", err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("the README's server after SIGINT: %v, want exit 0", err)
	}
}

func errorsIsStatus(err error, s gwir.Status) bool {
	st, ok := zrt.StatusOf(err)
	return ok && st == s
}

package modtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root returns the directory of this module's go.mod.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("modtest: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Module writes a module named path into a new temporary directory, with
// files (relative names → contents), and returns the directory.
func Module(t testing.TB, path string, files map[string]string) string {
	t.Helper()
	root := Root(t)
	dir := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	goMod := "module " + path + "\n\ngo 1.26\n\nrequire github.com/zerohop/zerohop v0.0.0\n\nreplace github.com/zerohop/zerohop => " + root + "\n"
	write(t, filepath.Join(dir, "go.mod"), goMod)
	write(t, filepath.Join(dir, "go.sum"), string(sum))
	for name, content := range files {
		write(t, filepath.Join(dir, name), content)
	}
	// Resolve the requirements the files add from this module's own
	// versions (the module cache), never newer ones.
	Go(t, dir, "mod", "tidy", "-e")
	return dir
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Go runs the go command in dir and returns its combined output; a failure
// fails t with that output.
func Go(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := GoErr(dir, args...)
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return out
}

// GoErr runs the go command in dir and returns its output and error.
func GoErr(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

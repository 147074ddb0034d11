package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/modtest"
)

// plugins builds protoc-gen-zerohop (this package) and protoc-gen-go (from
// the module's own google.golang.org/protobuf) into a directory removed
// when t ends.
func plugins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for pkg, name := range map[string]string{".": "protoc-gen-zerohop", "google.golang.org/protobuf/cmd/protoc-gen-go": "protoc-gen-go"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return dir
}

// protocRun runs protoc with both plugins; it returns the files written
// under out (relative name → content) and protoc's error output.
func protocRun(t *testing.T, bin, protoc, includeDir, file string, args ...string) (map[string]string, string, error) {
	t.Helper()
	out := t.TempDir()
	all := append([]string{
		"--plugin=protoc-gen-zerohop=" + filepath.Join(bin, "protoc-gen-zerohop"),
		"--plugin=protoc-gen-go=" + filepath.Join(bin, "protoc-gen-go"),
		"-I", includeDir,
	}, args...)
	for i, a := range all {
		all[i] = strings.ReplaceAll(a, "OUT", out)
	}
	cmd := exec.Command(protoc, append(all, file)...)
	stderr, err := cmd.CombinedOutput()
	files := map[string]string{}
	filepath.WalkDir(out, func(path string, d os.DirEntry, werr error) error {
		if werr == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			rel, _ := filepath.Rel(out, path)
			files[rel] = string(data)
		}
		return nil
	})
	return files, string(stderr), err
}

// Debian's protoc runs the plugin and writes exactly the golden output;
// refusals make protoc fail with the plugin's message.
func TestProtocWritesGoldenOutput(t *testing.T) {
	protoc := requireProtoc(t)
	bin := plugins(t)
	for _, c := range goldenCases {
		t.Run(c.golden, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(goldenDir, c.golden))
			if err != nil {
				t.Fatal(err)
			}
			files, stderr, err := protocRun(t, bin, protoc, goldenDir, c.proto, "--zerohop_out="+c.param+":OUT")
			if msg, isErr := strings.CutPrefix(string(want), "error: "); isErr {
				if err == nil || !strings.Contains(stderr, strings.TrimSpace(msg)) {
					t.Fatalf("protoc: err %v, stderr %q; want a failure saying %q", err, stderr, msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("protoc: %v\n%s", err, stderr)
			}
			if got := renderFiles(files); got != string(want) {
				t.Errorf("protoc output differs from %s:\n%s", c.golden, diffLines(string(want), got))
			}
		})
	}
}

func renderFiles(files map[string]string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString("-- " + filepath.ToSlash(n) + " --\n" + files[n])
	}
	return b.String()
}

// The generated code compiles and vets beside protoc-gen-go's messages, in
// a module of its own that requires this one.
func TestGeneratedCodeCompiles(t *testing.T) {
	protoc := requireProtoc(t)
	bin := plugins(t)
	files := map[string]string{}
	for _, c := range []struct{ proto, param string }{
		{"kv.proto", "handlers=blocking"}, {"directives.proto", ""}, {"nopackage.proto", ""},
	} {
		out, stderr, err := protocRun(t, bin, protoc, goldenDir, c.proto,
			"--go_out=module=example.com/golden:OUT", "--zerohop_out="+c.param+",module=example.com/golden:OUT")
		if err != nil {
			t.Fatalf("protoc %s: %v\n%s", c.proto, err, stderr)
		}
		for n, content := range out {
			files[n] = content
		}
	}
	if len(files) != 6 {
		t.Fatalf("generated %d files, want 6: %v", len(files), renderFiles(files)[:200])
	}
	dir := modtest.Module(t, "example.com/golden", files)
	modtest.Go(t, dir, "vet", "./...")
}

// buf, when installed, drives the plugin the same way protoc does.
func TestBufWritesGoldenOutput(t *testing.T) {
	buf, err := exec.LookPath("buf")
	if err != nil {
		t.Skip("buf is not installed (it is optional: e.g. npm install -g @bufbuild/buf); protoc is tested above")
	}
	bin := plugins(t)
	work := t.TempDir()
	for _, name := range []string{"kv.proto", "directives.proto"} {
		data, err := os.ReadFile(filepath.Join(goldenDir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(work, name), data, 0o644)
	}
	os.WriteFile(filepath.Join(work, "buf.yaml"), []byte("version: v2\n"), 0o644)
	os.WriteFile(filepath.Join(work, "buf.gen.yaml"), []byte("version: v2\nplugins:\n  - local: "+
		filepath.Join(bin, "protoc-gen-zerohop")+"\n    out: out\n"), 0o644)
	cmd := exec.Command(buf, "generate")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, out)
	}
	for golden, file := range map[string]string{
		"kv.golden":         "example.com/golden/kvpb/kv_zerohop.pb.go",
		"directives.golden": "example.com/golden/directivespb/directives_zerohop.pb.go",
	} {
		got, err := os.ReadFile(filepath.Join(work, "out", file))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(goldenDir, golden))
		if w := strings.TrimPrefix(string(want), "-- "+file+" --\n"); string(got) != w {
			t.Errorf("buf's %s differs from %s:\n%s", file, golden, diffLines(w, string(got)))
		}
	}
}

// The generated packages checked in (this test's service, examples/kv) are
// what protoc and the plugins make of their .proto today. protoc-gen-go
// records protoc's version, which may differ between machines: that line
// is left out of the comparison.
func TestCheckedInCodeIsCurrent(t *testing.T) {
	protoc := requireProtoc(t)
	bin := plugins(t)
	for _, dir := range []string{"internal/testsvc", "../../examples/kv/kvpb"} {
		protos, _ := filepath.Glob(filepath.Join(dir, "*.proto"))
		if len(protos) == 0 {
			t.Fatalf("no .proto in %s", dir)
		}
		for _, p := range protos {
			files, stderr, err := protocRun(t, bin, protoc, dir, filepath.Base(p),
				"--go_out=OUT", "--go_opt=paths=source_relative", "--zerohop_out=OUT", "--zerohop_opt=paths=source_relative")
			if err != nil {
				t.Fatalf("protoc %s: %v\n%s", p, err, stderr)
			}
			for name, want := range files {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Errorf("%v: run go generate in %s", err, dir)
					continue
				}
				if withoutProtocVersion(string(got)) != withoutProtocVersion(want) {
					t.Errorf("%s/%s is stale: run go generate in %s\n%s", dir, name, dir, diffLines(want, string(got)))
				}
			}
		}
	}
}

func withoutProtocVersion(src string) string {
	lines := strings.Split(src, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "// \tprotoc ") {
			lines[i] = "// \tprotoc (version left out)"
		}
	}
	return strings.Join(lines, "\n")
}

package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/topo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// go test ./cmd/protoc-gen-zerohop -run Golden -update rewrites the
// descriptor sets (with protoc) and the expected outputs (with the
// generator) of testdata/golden; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite testdata/golden: the .desc files with protoc, the .golden files with the generator")

const goldenDir = "testdata/golden"

// goldenCases: one .proto, one plugin parameter, one expected output. An
// expected output is the generated files, each after a "-- NAME --" line,
// or "error: …" when the plugin must refuse.
var goldenCases = []struct {
	proto, param, golden string
}{
	{"kv.proto", "", "kv.golden"},
	{"kv.proto", "handlers=blocking", "kv_blocking.golden"},
	{"kv.proto", "paths=source_relative", "kv_source_relative.golden"},
	{"directives.proto", "", "directives.golden"},
	{"directives.proto", "handlers=blocking", "directives_blocking.golden"},
	{"nopackage.proto", "", "nopackage.golden"},
	{"nomessages.proto", "", "nomessages.golden"},
	{"streaming.proto", "", "streaming.golden"},
	{"baddirective.proto", "", "baddirective.golden"},
	{"kv.proto", "handlers=fast", "badparam.golden"},
	{"kv.proto", "colour=blue", "unknownparam.golden"},
}

// renderResponse turns a plugin response into the golden text.
func renderResponse(resp *pluginpb.CodeGeneratorResponse) string {
	if resp.Error != nil {
		return "error: " + resp.GetError() + "\n"
	}
	var b strings.Builder
	for _, f := range resp.File {
		b.WriteString("-- " + f.GetName() + " --\n")
		b.WriteString(f.GetContent())
	}
	return b.String()
}

// request builds the CodeGeneratorRequest protoc would send for file from
// its descriptor set (written by protoc with --include_imports, so it
// lists dependencies first).
func request(t *testing.T, file, param string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, descName(file)))
	if err != nil {
		t.Fatalf("%v (run the test with -update where protoc is installed)", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{file}, ProtoFile: set.File}
	if param != "" {
		req.Parameter = proto.String(param)
	}
	return req
}

func descName(file string) string { return strings.TrimSuffix(file, ".proto") + ".desc" }

func TestGolden(t *testing.T) {
	if *update {
		protoc := requireProtoc(t)
		done := map[string]bool{}
		for _, c := range goldenCases {
			if done[c.proto] {
				continue
			}
			done[c.proto] = true
			cmd := exec.Command(protoc, "-I", goldenDir, "--include_imports", "--include_source_info",
				"--descriptor_set_out="+filepath.Join(goldenDir, descName(c.proto)), c.proto)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("protoc %s: %v\n%s", c.proto, err, out)
			}
		}
	}
	for _, c := range goldenCases {
		t.Run(c.golden, func(t *testing.T) {
			got := renderResponse(run(request(t, c.proto, c.param)))
			path := filepath.Join(goldenDir, c.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("output of %s with %q differs from %s (rerun with -update and review the diff):\n%s",
					c.proto, c.param, path, diffLines(string(want), got))
			}
		})
	}
}

// Every golden file belongs to a case: a stale one fails.
func TestGoldenFilesHaveCases(t *testing.T) {
	used := map[string]bool{}
	for _, c := range goldenCases {
		used[c.golden], used[c.proto], used[descName(c.proto)] = true, true, true
	}
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !used[e.Name()] {
			t.Errorf("%s/%s belongs to no case of goldenCases", goldenDir, e.Name())
		}
	}
}

// requireProtoc returns protoc's path. Without it the test skips, naming
// the package; under scripts/test (CI), which installs it, it fails (see
// topo.SkipMissing).
func requireProtoc(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("protoc")
	if err != nil {
		topo.SkipMissing(t, "needs protoc: apt-get install protobuf-compiler (scripts/test does)")
	}
	return p
}

// diffLines shows the lines of got that differ from want, with line numbers.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b bytes.Buffer
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want " + wl + "\n  got  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

package benchplot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/zerohop/zerohop/bench"
)

func TestWritePNG(t *testing.T) {
	r := &bench.Report{Date: "2026-01-02T03:04:05Z", Variants: []bench.VariantResult{
		{Name: bench.VariantXSK, Points: []bench.Point{{Outstanding: 1, RPS: 30000, P99Us: 40}, {Outstanding: 64, RPS: 300000, P99Us: 300}}},
		{Name: bench.VariantNetHTTP, Points: []bench.Point{{Outstanding: 1, RPS: 10000, P99Us: 200}}},
		{Name: bench.VariantSidecar, Skipped: "nginx not installed"},
	}}
	path := filepath.Join(t.TempDir(), "p.png")
	if err := Write(r, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) || len(data) < 1000 {
		t.Fatalf("not a PNG: %v (%d bytes)", err, len(data))
	}
}

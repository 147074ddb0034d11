//go:build plot

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/zerohop/zerohop/bench"
)

// Built with -tags plot, bench renders a saved report as a PNG.
func TestBenchPlotFromJSON(t *testing.T) {
	dir := t.TempDir()
	rep := &bench.Report{Date: "2026-01-02T03:04:05Z", Variants: []bench.VariantResult{
		{Name: bench.VariantUring, Points: []bench.Point{{Outstanding: 1, RPS: 1000, P99Us: 50}, {Outstanding: 4, RPS: 3000, P99Us: 90}}},
	}}
	jsonPath, png := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png")
	if err := rep.WriteJSON(jsonPath); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := benchMain(context.Background(), &out, &errOut, os.Args[0], nil, []string{"--from", jsonPath, "--plot", png}); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if data, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Fatalf("no PNG: %v", err)
	}
}

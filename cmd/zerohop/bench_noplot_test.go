//go:build !plot

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// The default build has no plotting stack: --plot is a usage error that
// says how to get plots, before anything runs.
func TestBenchPlotNeedsTheTag(t *testing.T) {
	var out, errOut bytes.Buffer
	code := benchMain(context.Background(), &out, &errOut, os.Args[0], nil, []string{"--plot", "x.png"})
	if code != exitUsage || !strings.Contains(errOut.String(), "-tags plot") {
		t.Fatalf("exit %d, stderr %q; want 2 and how to build with -tags plot", code, errOut.String())
	}
}

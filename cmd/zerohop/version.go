package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

func init() {
	register(command{name: "version", summary: "print the module version and VCS revision of this binary", run: runVersion})
}

func runVersion(args []string) int { return versionCommand(os.Stdout, os.Stderr, args) }

const versionUsage = `usage: zerohop version [--json]

Prints the module version, the VCS revision and time this binary was built
from (and whether the work tree had changes), and the Go toolchain, as
recorded by the go command (runtime/debug.ReadBuildInfo). A binary built
outside a VCS checkout, or with -buildvcs=false, has no revision.`

// buildVersion is what `zerohop version` reports.
type buildVersion struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func readVersion() (buildVersion, bool) {
	v := buildVersion{Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v, false
	}
	v.Module, v.Version = bi.Main.Path, bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v, true
}

func versionCommand(out, errOut io.Writer, args []string) int {
	fs := newFlags("version", versionUsage)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	if fs.NArg() > 0 {
		return fs.usageError(errOut, "unexpected argument %q: version takes only --json", fs.Arg(0))
	}
	v, ok := readVersion()
	if !ok {
		return fail(errOut, "version", fmt.Errorf("this binary carries no build information (built without module support?)"), nil)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fail(errOut, "version", err, nil)
		}
		return exitOK
	}
	fmt.Fprintf(out, "%s %s\n", v.Module, v.Version)
	switch {
	case v.Revision == "":
		fmt.Fprintln(out, "revision unknown (not built from a VCS checkout, or with -buildvcs=false)")
	case v.Modified:
		fmt.Fprintf(out, "revision %s (%s), with uncommitted changes\n", v.Revision, v.Time)
	default:
		fmt.Fprintf(out, "revision %s (%s)\n", v.Revision, v.Time)
	}
	fmt.Fprintf(out, "%s %s\n", v.Go, v.Platform)
	return exitOK
}

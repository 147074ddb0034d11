package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/zerohop/zerohop/internal/sysinfo"
	"github.com/zerohop/zerohop/uring"
)

func init() {
	register(command{name: "probe", summary: "report what this kernel and process allow", run: runProbe})
	registerProbeSection("system", systemRows)
	registerProbeSection("io_uring", uringRows)
}

// probeRow is one line of `zerohop probe`. OK is set for yes/no checks
// (Value is then "yes" or "no"); informational rows leave it nil.
type probeRow struct {
	Section string `json:"section"`
	Name    string `json:"name"`
	Value   string `json:"value"`
	OK      *bool  `json:"ok,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

type probeReport struct {
	Kernel string     `json:"kernel"`
	Rows   []probeRow `json:"rows"`
}

// probeSection produces the rows of one section when the probe runs.
type probeSection struct {
	name string
	rows func() []probeRow
}

// probeSections are printed in registration order.
//
// EXTENSION POINT: other files of this command register their sections
// here from init, e.g. the AF_XDP checks (bind, copy/zero-copy, shared
// UMEM), the XDP attach modes and the backend runtime.Listen would pick.
// probe.go deliberately does not implement those checks.
var probeSections []probeSection

// registerProbeSection adds a section of rows to `zerohop probe`.
func registerProbeSection(name string, rows func() []probeRow) {
	probeSections = append(probeSections, probeSection{name: name, rows: rows})
}

func runProbe(args []string) int {
	return probe(os.Stdout, os.Stderr, args)
}

// probe writes the report to out; it returns 0 whenever it could probe,
// whatever it found, and 2 for bad flags.
func probe(out, errOut io.Writer, args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(errOut)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(errOut, "usage: zerohop probe [--json]\n\nReports the kernel, io_uring opcodes, features and setup flags,\nBTF, capabilities and RLIMIT_MEMLOCK, as this process sees them.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	report := collectProbe()
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			fmt.Fprintln(errOut, "zerohop probe:", err)
			return 1
		}
		return 0
	}
	printProbe(out, report)
	return 0
}

func collectProbe() probeReport {
	var report probeReport
	if _, release, err := sysinfo.Kernel(); err != nil {
		report.Kernel = "unknown (" + err.Error() + ")"
	} else {
		report.Kernel = release
	}
	for _, s := range probeSections {
		for _, row := range s.rows() {
			if row.Section == "" {
				row.Section = s.name
			}
			report.Rows = append(report.Rows, row)
		}
	}
	return report
}

func printProbe(out io.Writer, report probeReport) {
	fmt.Fprintf(out, "kernel  %s\n", report.Kernel)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	section := ""
	for _, row := range report.Rows {
		if row.Section != section {
			section = row.Section
			fmt.Fprintf(tw, "\n%s\n", section)
		}
		if row.Detail == "" {
			fmt.Fprintf(tw, "  %s\t%s\n", row.Name, row.Value)
		} else {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", row.Name, row.Value, row.Detail)
		}
	}
	tw.Flush()
}

func yesNo(name string, ok bool, detail string) probeRow {
	value := "no"
	if ok {
		value = "yes"
	}
	return probeRow{Name: name, Value: value, OK: &ok, Detail: detail}
}

func info(name, value string) probeRow { return probeRow{Name: name, Value: value} }

func systemRows() []probeRow {
	rows := []probeRow{yesNo("BTF", sysinfo.HaveBTF(), sysinfo.BTFPath)}
	if soft, hard, err := sysinfo.MemlockLimit(); err != nil {
		rows = append(rows, info("RLIMIT_MEMLOCK", "unknown: "+err.Error()))
	} else {
		rows = append(rows, info("RLIMIT_MEMLOCK", limitString(soft)+" (hard "+limitString(hard)+")"))
	}
	if v, err := sysinfo.IoUringDisabled(); err != nil {
		rows = append(rows, info("kernel.io_uring_disabled", "absent (kernel before 6.6: not gated)"))
	} else {
		rows = append(rows, info("kernel.io_uring_disabled", strconv.Itoa(v)))
	}
	if mode, err := sysinfo.SeccompMode(); err == nil {
		rows = append(rows, info("seccomp", [...]string{"none", "strict", "filter"}[min(mode, 2)]))
	}
	caps, err := sysinfo.EffectiveCaps()
	for _, c := range sysinfo.Relevant {
		detail := "effective set"
		if err != nil {
			detail = err.Error()
		}
		rows = append(rows, yesNo(c.String(), err == nil && caps.Has(c), detail))
	}
	return rows
}

func limitString(v uint64) string {
	if v == sysinfo.Unlimited {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10) + " bytes"
}

// uringRows reports what the uring package probed: the opcodes zerohop
// uses, the features it relies on and the setup flags (each found by
// creating a ring with it).
func uringRows() []probeRow {
	p, err := uring.Probe()
	if err != nil {
		return []probeRow{{Name: "io_uring", Value: "no", OK: new(bool), Detail: err.Error()}}
	}
	rows := []probeRow{info("last opcode", strconv.Itoa(int(p.LastOp)))}
	for _, op := range uring.UsedOps {
		err := uring.HaveOp(op)
		rows = append(rows, withSection("io_uring opcodes", yesNo(op.String(), err == nil, errDetail(err))))
	}
	for _, f := range []struct {
		name string
		have func() error
	}{
		{"multishot ACCEPT", uring.HaveMultishotAccept},
		{"multishot RECV/RECVMSG", uring.HaveMultishotRecv},
		{"provided buffer rings", uring.HaveBufferRing},
		{"kernel-mapped buffer rings", uring.HaveBufferRingMmap},
		{"timed waits (EXT_ARG)", uring.HaveExtArg},
		{"CQE_SKIP_SUCCESS", uring.HaveCQESkip},
	} {
		err := f.have()
		rows = append(rows, withSection("io_uring features", yesNo(f.name, err == nil, errDetail(err))))
	}
	for _, f := range []struct {
		name string
		have func() error
	}{
		{"SINGLE_ISSUER", uring.HaveSingleIssuer},
		{"DEFER_TASKRUN", uring.HaveDeferTaskrun},
		{"COOP_TASKRUN", uring.HaveCoopTaskrun},
		{"SQPOLL", uring.HaveSQPoll},
		{"NO_SQARRAY", uring.HaveNoSQArray},
	} {
		err := f.have()
		rows = append(rows, withSection("io_uring setup flags", yesNo(f.name, err == nil, errDetail(err))))
	}
	return rows
}

func withSection(section string, row probeRow) probeRow {
	row.Section = section
	return row
}

func errDetail(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

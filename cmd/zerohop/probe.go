package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/sysinfo"
	"github.com/zerohop/zerohop/runtime"
	"github.com/zerohop/zerohop/uring"
	"github.com/zerohop/zerohop/xsk"
)

func init() {
	register(command{name: "probe", summary: "report what this kernel and process allow", run: runProbe})
	registerProbeSection("system", systemRows)
	registerProbeSection("io_uring", uringRows)
	registerTargetedProbeSection("af_xdp", afXDPRows)
	registerTargetedProbeSection("queues", queueRows)
	registerTargetedProbeSection("backend", backendRows)
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
	// QueueMap is --iface's queue map, as the "queues" rows show it.
	QueueMap *sysinfo.QueueMap `json:"queue_map,omitempty"`
}

// probeTarget is the interface and queue named on the command line, for
// the sections that probe a device; iface is empty when none was named.
type probeTarget struct {
	iface string
	queue int
	addr  string
}

// probeSection produces the rows of one section when the probe runs:
// through rows, or through rowsFor when it needs the target.
type probeSection struct {
	name    string
	rows    func() []probeRow
	rowsFor func(probeTarget) []probeRow
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

// registerTargetedProbeSection adds a section whose rows depend on the
// interface and queue given with --iface and --queue.
func registerTargetedProbeSection(name string, rows func(probeTarget) []probeRow) {
	probeSections = append(probeSections, probeSection{name: name, rowsFor: rows})
}

func runProbe(args []string) int {
	return probe(os.Stdout, os.Stderr, args)
}

const probeUsage = `usage: zerohop probe [--json] [--iface IFACE [--queue N]] [--addr IP:PORT]

Reports the kernel, io_uring opcodes, features and setup flags,
BTF, capabilities, RLIMIT_MEMLOCK and AF_XDP, as this process sees them;
with --iface also that interface's queue map (queue -> IRQ -> CPU), the
XDP program attached to it, and how XDP attaches and AF_XDP binds there;
and the backend runtime.Listen picks for --addr, and why.

Exit status: 0 when it could probe (whatever it found), 1 when --iface
names no interface of this network namespace, 2 for bad flags.`

// probeFlags maps the runtime's option names in its errors to probe's flags.
var probeFlags = map[string]string{"WithInterface": "--iface", "WithQueues": "--queue"}

// probe writes the report to out (see probeUsage for the exit status).
func probe(out, errOut io.Writer, args []string) int {
	fs := newFlags("probe", probeUsage)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var target probeTarget
	fs.StringVar(&target.iface, "iface", "", "also show this interface's queue map (queue, IRQ, CPU) and XDP program, and probe XDP attach\nmodes and AF_XDP binds on it (briefly attaches a program and binds a socket when it is free)")
	fs.IntVar(&target.queue, "queue", 0, "queue of --iface to bind the AF_XDP probe socket to")
	fs.StringVar(&target.addr, "addr", "", "address whose backend choice to report (default: --iface's first IPv4 address, or 127.0.0.1, port 7000)")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	if fs.NArg() > 0 {
		return fs.usageError(errOut, "unexpected argument %q: probe takes only flags", fs.Arg(0))
	}
	if target.queue < 0 {
		return fs.usageError(errOut, "--queue %d: want a queue number ≥ 0", target.queue)
	}
	report := collectProbe(target)
	for i := range report.Rows {
		report.Rows[i].Detail = withFlagNames(report.Rows[i].Detail, probeFlags)
		report.Rows[i].Value = withFlagNames(report.Rows[i].Value, probeFlags)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return fail(errOut, "probe", err, nil)
		}
	} else {
		printProbe(out, report)
	}
	if target.iface != "" {
		if _, err := net.InterfaceByName(target.iface); err != nil {
			return fail(errOut, "probe", fmt.Errorf("--iface %s: no such interface in this network namespace (see `ip link`): %w", target.iface, err), nil)
		}
	}
	return exitOK
}

func collectProbe(target probeTarget) probeReport {
	var report probeReport
	if _, release, err := sysinfo.Kernel(); err != nil {
		report.Kernel = "unknown (" + err.Error() + ")"
	} else {
		report.Kernel = release
	}
	if target.iface != "" {
		if qm, err := sysinfo.InterfaceQueues(target.iface); err == nil {
			report.QueueMap = &qm
		}
	}
	for _, s := range probeSections {
		var rows []probeRow
		if s.rowsFor != nil {
			rows = s.rowsFor(target)
		} else {
			rows = s.rows()
		}
		for _, row := range rows {
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

// afXDPRows reports whether AF_XDP sockets exist and, for --iface, how the
// steering program attaches (native, generic) and how a socket binds to
// --queue (zero-copy, copy). The interface probes briefly attach and bind,
// so a server holding the interface shows up as "in use", not as "no".
func afXDPRows(target probeTarget) []probeRow {
	err := xsk.HaveAFXDP()
	rows := []probeRow{yesNo("AF_XDP socket", err == nil, errDetail(err))}
	if target.iface == "" {
		return rows
	}
	ifc, err := net.InterfaceByName(target.iface)
	if err != nil {
		return append(rows, probeRow{Name: "interface", Value: "not found", OK: new(bool),
			Detail: fmt.Sprintf("%s: %v (interfaces are looked up in this process's network namespace)", target.iface, err)})
	}
	rows = append(rows, info("interface", fmt.Sprintf("%s (ifindex %d), queue %d", ifc.Name, ifc.Index, target.queue)))
	rows = append(rows, xdpProgramRow(ifc.Name))

	if attach, err := bpf.ProbeAttach(ifc.Name); err != nil {
		rows = append(rows, probeRow{Name: "XDP attach", Value: "unknown", Detail: err.Error()})
	} else {
		rows = append(rows, attachRow("XDP native", attach.Native), attachRow("XDP generic", attach.Generic))
	}

	zeroCopy, err := xsk.ProbeBind(ifc.Index, target.queue)
	switch {
	case errors.Is(err, unix.EBUSY):
		inUse := "another AF_XDP socket holds queue " + strconv.Itoa(target.queue) + " (a running server?): " + err.Error()
		if zeroCopy {
			rows = append(rows, yesNo("AF_XDP zero-copy bind", true, ""))
		} else {
			rows = append(rows, probeRow{Name: "AF_XDP zero-copy bind", Value: "in use", Detail: inUse})
		}
		rows = append(rows, probeRow{Name: "AF_XDP copy bind", Value: "in use", Detail: inUse})
	case err != nil:
		if zeroCopy {
			rows = append(rows, yesNo("AF_XDP zero-copy bind", true, ""))
		} else {
			rows = append(rows, yesNo("AF_XDP zero-copy bind", false, err.Error()))
		}
		rows = append(rows, yesNo("AF_XDP copy bind", false, err.Error()))
	default:
		detail := ""
		if !zeroCopy {
			detail = "the driver refuses XDP_ZEROCOPY (EOPNOTSUPP): sockets bind in copy mode"
		}
		rows = append(rows, yesNo("AF_XDP zero-copy bind", zeroCopy, detail), yesNo("AF_XDP copy bind", true, ""))
	}
	return rows
}

// xdpProgramRow says what is attached to the interface's XDP hook: nothing,
// zerohop's shared steering program (with its servers and services), or a
// foreign program that zerohop will not replace.
func xdpProgramRow(iface string) probeRow {
	a, err := bpf.Inspect(iface)
	switch {
	case err != nil:
		return probeRow{Name: "XDP program", Value: "unknown", Detail: err.Error()}
	case a.ProgramID == 0:
		return info("XDP program", "none")
	case a.Zerohop:
		return probeRow{Name: "XDP program", Value: fmt.Sprintf("zerohop (id %d, link %d, %s mode)", a.ProgramID, a.LinkID, a.Mode),
			Detail: fmt.Sprintf("%d servers, %d services; redirected %d, passed %d (no socket %d, stale %d, fragment %d, oversize %d), ACL dropped %d",
				len(a.Slots), len(a.Services), a.Counters.Redirected, a.Counters.Passed, a.Counters.NoSocket, a.Counters.Stale,
				a.Counters.Fragment, a.Counters.Oversize, a.Counters.ACLDropped)}
	}
	return probeRow{Name: "XDP program", Value: fmt.Sprintf("%q (id %d, %s mode)", a.Name, a.ProgramID, a.Mode), OK: new(bool),
		Detail: "zerohop servers cannot use this interface's XDP while it is attached: " + errDetail(a.Err)}
}

// queueRows shows --iface's queue map: per receive queue, its IRQ and the
// CPU its loop is pinned to, and where that CPU came from.
func queueRows(target probeTarget) []probeRow {
	if target.iface == "" {
		return nil
	}
	m, err := sysinfo.InterfaceQueues(target.iface)
	if err != nil {
		return []probeRow{{Name: "queue map", Value: "unknown", OK: new(bool), Detail: err.Error()}}
	}
	kind := "device"
	if m.Virtual {
		kind = "virtual"
	}
	rows := []probeRow{
		probeRow{Name: "rx queues", Value: strconv.Itoa(m.RXQueues), Detail: m.CountFrom},
		probeRow{Name: "interface kind", Value: kind, Detail: m.VirtualFrom},
		info("CPUs", sysinfo.FormatCPUList(m.CPUs)),
	}
	for _, q := range m.Queues {
		irq := "no IRQ of its own"
		if q.IRQ >= 0 {
			irq = fmt.Sprintf("IRQ %d %s, affinity %s", q.IRQ, q.IRQName, sysinfo.FormatCPUList(q.Affinity))
		}
		detail := fmt.Sprintf("%s (%s)", q.Source, irq)
		if q.Note != "" {
			detail += "; " + q.Note
		}
		rows = append(rows, probeRow{Name: "queue " + strconv.Itoa(q.Queue), Value: "CPU " + strconv.Itoa(q.CPU), Detail: detail})
	}
	return rows
}

// attachRow turns one mode of bpf.ProbeAttach into a row; an interface
// that already holds an XDP program could not be probed ("in use").
func attachRow(name string, err error) probeRow {
	if errors.Is(err, bpf.ErrBusy) {
		return probeRow{Name: name, Value: "in use", Detail: "an XDP program is attached (a running server?); probe again without it: " + err.Error()}
	}
	return yesNo(name, err == nil, errDetail(err))
}

// backendRows reports the backend runtime.Listen picks for the target, by
// listening with BackendAuto and shutting down at once: the answer is the
// real one, reason included, not a prediction.
func backendRows(target probeTarget) []probeRow {
	addr := target.addr
	if addr == "" {
		addr = "127.0.0.1:7000"
		if ip := firstIPv4(target.iface); ip.IsValid() {
			addr = netip.AddrPortFrom(ip, 7000).String()
		}
	}
	opts := []runtime.Option{runtime.WithQueues(target.queue), runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
	if target.iface != "" {
		opts = append(opts, runtime.WithInterface(target.iface))
	}
	srv, err := runtime.Listen("udp", addr, opts...)
	if err != nil {
		return []probeRow{{Name: "runtime.Listen " + addr, Value: "fails", OK: new(bool), Detail: err.Error()}}
	}
	defer srv.Shutdown(context.Background())
	return []probeRow{info("runtime.Listen "+addr, srv.Backend().String()), info("reason", srv.BackendReason())}
}

func firstIPv4(iface string) netip.Addr {
	if iface == "" {
		return netip.Addr{}
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

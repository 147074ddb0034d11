package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/zerohop/zerohop/bpf"
)

func init() {
	register(command{name: "stat", summary: "show the XDP counters, services and ACL rules of a server with pinned maps", run: runStat})
}

func runStat(args []string) int { return stat(os.Stdout, os.Stderr, args) }

type statReport struct {
	Iface    string         `json:"iface"`
	Counters bpf.Counters   `json:"counters"`
	Services []bpf.Service  `json:"services"`
	ACL      []statACLEntry `json:"acl"`
}

type statACLEntry struct {
	Source string `json:"source"`
	Port   uint16 `json:"port"`
	Action string `json:"action"`
	Hits   uint64 `json:"hits"`
}

// stat reads the maps a server pinned (zerohop serve --pin-maps) while it
// runs; it changes nothing.
func stat(out, errOut io.Writer, args []string) int {
	fs := newFlags("stat", "usage: zerohop stat --iface IFACE [--json]\n\nReads the XDP counters, services and ACL rules that a server started\nwith --pin-maps keeps under /sys/fs/bpf/zerohop/IFACE; changes nothing.")
	iface := fs.String("iface", "", "interface of the server (its maps are under /sys/fs/bpf/zerohop/IFACE)")
	dir := fs.String("dir", "", "pin directory, instead of --iface")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	if fs.NArg() > 0 {
		return fs.usageError(errOut, "unexpected argument %q: stat takes only flags", fs.Arg(0))
	}
	if (*iface == "") == (*dir == "") {
		return fs.usageError(errOut, "give exactly one of --iface IFACE and --dir PINDIR")
	}
	if *dir == "" {
		*dir = bpf.PinDir(*iface)
	}
	maps, err := bpf.OpenPinned(*dir)
	if err != nil {
		return fail(errOut, "stat", fmt.Errorf("%w (is a server running with --pin-maps?)", err), nil)
	}
	defer maps.Close()
	rep := statReport{Iface: *iface}
	if rep.Counters, err = maps.Counters(); err != nil {
		return fail(errOut, "stat", err, nil)
	}
	if rep.Services, err = maps.Services(); err != nil {
		return fail(errOut, "stat", err, nil)
	}
	rules, err := maps.ACLRules()
	if err != nil {
		return fail(errOut, "stat", err, nil)
	}
	for _, r := range rules {
		rep.ACL = append(rep.ACL, statACLEntry{Source: r.Source.String(), Port: r.Port, Action: r.Action.String(), Hits: r.Hits})
	}
	sort.Slice(rep.Services, func(i, j int) bool { return rep.Services[i].Port < rep.Services[j].Port })
	sort.Slice(rep.ACL, func(i, j int) bool { return rep.ACL[i].Source < rep.ACL[j].Source })
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail(errOut, "stat", err, nil)
		}
		return exitOK
	}
	w := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	c := rep.Counters
	fmt.Fprintf(w, "XDP packets\nseen\t%d\nredirected to AF_XDP\t%d\npassed to the kernel\t%d\n  of which malformed\t%d\n  of which no socket\t%d\nACL dropped\t%d\nloss knob dropped\t%d\n",
		c.Seen, c.Redirected, c.Passed, c.Malformed, c.NoSocket, c.ACLDropped, c.LossDropped)
	fmt.Fprintln(w, "\nservices\tport\taddress\tid")
	for _, s := range rep.Services {
		addr := "any"
		if s.Addr.IsValid() {
			addr = s.Addr.String()
		}
		fmt.Fprintf(w, "\t%d\t%s\t%d\n", s.Port, addr, s.ID)
	}
	fmt.Fprintln(w, "\nACL rules\tsource\tport\taction\thits")
	for _, r := range rep.ACL {
		port := "any"
		if r.Port != 0 {
			port = fmt.Sprint(r.Port)
		}
		fmt.Fprintf(w, "\t%s\t%s\t%s\t%d\n", r.Source, port, r.Action, r.Hits)
	}
	w.Flush()
	return 0
}

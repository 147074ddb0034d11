package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/telemetry"
)

func init() {
	register(command{name: "stat", summary: "show a running server's loops, methods, drops, XDP counters, services and ACL rules", run: runStat})
}

func runStat(args []string) int { return stat(os.Stdout, os.Stderr, args) }

const statUsage = `usage: zerohop stat [--admin ADDR] [--iface IFACE | --dir PINDIR] [--json]

Shows what a running server's admin endpoint reports: loops, methods, drops,
the XDP counters, services and ACL rules of its interface, and for a server
with --identity its sealed-frame sessions (peer identity, key age, packets,
replays rejected). Without
--admin it finds the server's abstract socket in this network namespace (any
mount namespace will do); with --iface and no endpoint to reach it reads the
interface's XDP maps by id; --dir reads the maps a server started with
--pin-maps pinned there. It changes nothing.`

// stat reads a running server's admin endpoint (/stat) and prints it; with
// no endpoint to reach, it reads the interface's XDP maps by id. It
// changes nothing.
func stat(out, errOut io.Writer, args []string) int {
	fs := newFlags("stat", statUsage)
	admin := fs.String("admin", "", "the server's admin endpoint: HOST:PORT or unix:PATH|@NAME (default: the only "+telemetry.SocketPrefix+"* socket in this network namespace)")
	iface := fs.String("iface", "", "interface of the server: its XDP maps are read by id when the admin endpoint cannot be reached")
	dir := fs.String("dir", "", "read the XDP maps pinned in this directory instead (a server with --pin-maps), not the admin endpoint")
	asJSON := fs.Bool("json", false, "print JSON (telemetry.StatReport)")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fs.usageError(errOut, "unexpected argument %q: stat takes only flags", fs.Arg(0))
	case *dir != "" && *iface != "":
		return fs.usageError(errOut, "give exactly one of --iface IFACE and --dir PINDIR (the pinned maps of IFACE are in %s)", bpf.PinDir(*iface))
	case *dir != "" && *admin != "":
		return fs.usageError(errOut, "give exactly one of --admin ADDR and --dir PINDIR: --dir reads pinned maps, not the admin endpoint")
	}
	if *admin != "" {
		if _, err := telemetry.ParseEndpoint(*admin); err != nil {
			return fs.usageError(errOut, "--admin %q: %v", *admin, err)
		}
	}
	rep, err := readStat(errOut, *admin, *iface, *dir)
	if err != nil {
		return fail(errOut, "stat", err, nil)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail(errOut, "stat", err, nil)
		}
		return exitOK
	}
	printStat(out, &rep)
	return exitOK
}

// adminEndpoint is the --admin value, or the only admin socket here.
func adminEndpoint(admin string) (telemetry.Endpoint, error) {
	if admin != "" {
		return telemetry.ParseEndpoint(admin)
	}
	name, err := telemetry.FindSocket()
	if err != nil {
		return telemetry.Endpoint{}, err
	}
	return telemetry.Endpoint{Network: "unix", Address: name}, nil
}

// fetchStat GETs /stat from ep.
func fetchStat(c *http.Client, ep telemetry.Endpoint) (telemetry.StatReport, error) {
	var rep telemetry.StatReport
	resp, err := c.Get("http://zerohop/stat")
	if err != nil {
		return rep, fmt.Errorf("admin endpoint %s: %w", ep, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("admin endpoint %s: /stat answered %s", ep, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return rep, fmt.Errorf("admin endpoint %s: /stat: %w", ep, err)
	}
	return rep, nil
}

func readStat(errOut io.Writer, admin, iface, dir string) (telemetry.StatReport, error) {
	if dir != "" {
		maps, err := bpf.OpenPinned(dir)
		if err != nil {
			return telemetry.StatReport{}, fmt.Errorf("%w (is a server running with --pin-maps?)", err)
		}
		defer maps.Close()
		return telemetry.Snapshot(telemetry.Sources{XDP: maps, Iface: pinnedIface(dir)}), nil
	}
	ep, epErr := adminEndpoint(admin)
	if epErr == nil {
		c := ep.HTTPClient(5 * time.Second)
		defer c.CloseIdleConnections()
		rep, err := fetchStat(c, ep)
		if err == nil {
			return rep, nil
		}
		epErr = err
	}
	if iface == "" {
		if errors.Is(epErr, telemetry.ErrNoAdmin) {
			return telemetry.StatReport{}, fmt.Errorf("%w: give --admin ADDR, run in the server's network namespace (ip netns exec NS zerohop stat), or give --iface IFACE to read its XDP maps", epErr)
		}
		return telemetry.StatReport{}, epErr
	}
	maps, err := bpf.OpenAttached(iface)
	if err != nil {
		return telemetry.StatReport{}, fmt.Errorf("%v; and the XDP maps of %s: %w", epErr, iface, err)
	}
	defer maps.Close()
	fmt.Fprintf(errOut, "zerohop stat: %v; showing the XDP maps of %s only\n", epErr, iface)
	return telemetry.Snapshot(telemetry.Sources{XDP: maps, Iface: iface}), nil
}

// pinnedIface names the interface whose maps dir holds: IFACE for
// bpf.PinDir(IFACE), else the directory itself.
func pinnedIface(dir string) string {
	if name := filepath.Base(dir); bpf.PinDir(name) == filepath.Clean(dir) {
		return name
	}
	return dir
}

func ns(v int64) string {
	if v == 0 {
		return "-"
	}
	return time.Duration(v).String()
}

func printStat(out io.Writer, rep *telemetry.StatReport) {
	w := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	defer w.Flush()
	if s := rep.Server; s != nil {
		state := "serving"
		if s.Draining {
			state = "draining"
		}
		fmt.Fprintf(w, "server %s\tbackend %s\t%s\n", s.Addr, s.Backend, state)
		fmt.Fprintln(w, "\nloop\tqueues\tcore\trx\ttx\trequests\tpings\tdropped\tp50\tp99")
		for _, l := range s.Loops {
			fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", l.Queue, intsOrDash(l.Queues), l.Core, l.RX, l.TX, l.Requests,
				l.Pings, sumValues(l.Dropped), ns(l.Latency.P50Ns), ns(l.Latency.P99Ns))
		}
		t := s.Total
		fmt.Fprintln(w, "\nrequests by path\txsk\tudp\ttcp")
		fmt.Fprintf(w, "\t%d\t%d\t%d\n", t.Served["xsk"], t.Served["udp"], t.Served["tcp"])
		fmt.Fprintln(w, "\nmethod\trequests\tstatuses\tp50\tp99")
		for _, m := range s.Methods {
			kind := ""
			if m.Blocking {
				kind = " (blocking)"
			}
			fmt.Fprintf(w, "%s%s\t%d\t%s\t%s\t%s\n", m.Method, kind, m.Requests, statusList(m.Statuses), ns(m.Latency.P50Ns), ns(m.Latency.P99Ns))
		}
		fmt.Fprintf(w, "\nruntime answers\tbad_frame %d\tunknown_method %d\tpanics %d\toverloaded %d\ttoo_large %d\texpired %d\n",
			t.BadFrame, t.UnknownMethod, t.Panics, t.Overloaded, t.TooLarge, t.Expired)
		fmt.Fprintln(w, "\ndrops\tpath\treason\tcount")
		any := false
		for _, path := range sortedKeys(t.DroppedByPath) {
			for _, reason := range sortedKeys(t.DroppedByPath[path]) {
				if n := t.DroppedByPath[path][reason]; n > 0 {
					fmt.Fprintf(w, "\t%s\t%s\t%d\n", path, reason, n)
					any = true
				}
			}
		}
		if !any {
			fmt.Fprintln(w, "\t(none)")
		}
		if t.FillRingEmpty > 0 {
			fmt.Fprintf(w, "\nfill ring ran dry\t%d times (the kernel dropped packets)\n", t.FillRingEmpty)
		}
		fmt.Fprintln(w)
	}
	if x := rep.XDP; x != nil {
		fmt.Fprintf(w, "XDP on %s\n", x.Iface)
		if x.Error != "" {
			fmt.Fprintf(w, "error\t%s\n", x.Error)
		}
		c := x.Counters
		fmt.Fprintf(w, "XDP packets\nseen\t%d\nredirected to AF_XDP\t%d\npassed to the kernel\t%d\n  of which malformed\t%d\n  of which no socket\t%d\n"+
			"  of which stale server\t%d\n  of which fragments\t%d\n  of which oversize\t%d\nACL dropped\t%d\nloss knob dropped\t%d\nunsealed dropped\t%d\n",
			c.Seen, c.Redirected, c.Passed, c.Malformed, c.NoSocket, c.Stale, c.Fragment, c.Oversize, c.ACLDropped, c.LossDropped, c.UnsealedDropped)
		fmt.Fprintln(w, "\nservers\tslot\tpid\tqueues\theartbeat")
		for _, s := range x.Slots {
			hb := s.HeartbeatAge.Round(time.Millisecond).String() + " ago"
			if s.Stale {
				hb += " (stale)"
			}
			fmt.Fprintf(w, "\t%d\t%d\t%s\t%s\n", s.Slot, s.PID, intsOrDash(s.Queues), hb)
		}
		fmt.Fprintln(w, "\nservices\tport\taddress\tid\tslot\tpid")
		for _, s := range x.Services {
			stale := ""
			if s.Stale {
				stale = " (stale)"
			}
			fmt.Fprintf(w, "\t%d\t%s\t%d\t%d\t%d%s\n", s.Port, s.Addr, s.ID, s.Slot, s.PID, stale)
		}
		fmt.Fprintln(w, "\nACL rules\tsource\tport\taction\thits")
		for _, r := range x.ACL {
			port := "any"
			if r.Port != 0 {
				port = fmt.Sprint(r.Port)
			}
			fmt.Fprintf(w, "\t%s\t%s\t%s\t%d\n", r.Source, port, r.Action, r.Hits)
		}
	}
	if cl := rep.Client; cl != nil {
		if cl.Coverage.Methods {
			fmt.Fprintln(w, "\nclient\tmethod\tcalls\tattempts\tp99")
		}
		for _, m := range cl.Methods {
			p99 := "-"
			if m.Latency != nil {
				p99 = ns(m.Latency.P99Ns)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", m.Service, m.Method, statusList(m.Statuses, m.Failures), m.Attempts, p99)
		}
		fmt.Fprintln(w, "\nendpoints\tservice\taddr\tstate\tbreaker\tin flight\trequests\tretransmits\ttimeouts\tsrtt")
		for _, e := range cl.Endpoints {
			state, breaker, requests, retx, timeouts, srtt := "-", "-", "-", "-", "-", "-"
			if cl.Coverage.State {
				state = e.State
			}
			if cl.Coverage.Breaker {
				breaker = fmt.Sprintf("%.2f", e.BreakerDrop)
			}
			if cl.Coverage.Transport {
				requests, retx, timeouts, srtt = fmt.Sprint(e.Requests), fmt.Sprint(e.Retransmits), fmt.Sprint(e.Timeouts), ns(e.SRTTNs)
			}
			fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", orDash(e.Service), e.Addr, state, breaker, e.InFlight,
				requests, retx, timeouts, srtt)
		}
	}
	if rep.Sessions != nil {
		printSessions(w, rep.Sessions, rep.Server)
	}
}

// printSessions shows the sealed-frame sessions of a server (or client)
// with an identity: who each peer is, how old its keys are, what it
// sealed and opened, and what was refused.
func printSessions(w io.Writer, s *telemetry.SessionsReport, srv *telemetry.ServerReport) {
	if srv != nil {
		t := srv.Total
		fmt.Fprintf(w, "\nsealed requests\tsealed %d\tunsealed served %d\tunsealed denied %d\n", t.Sealed, t.Unsealed, t.UnsealedDenied)
	}
	fmt.Fprintln(w, "\nsessions\tid\trole\tpeer identity\taddr\tsuite\tkey age\tkey updates\tsealed\topened\treplays rejected\ttoo old\tauth failed\texpires in")
	now := time.Now()
	for _, x := range s.Sessions {
		fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\n", x.ID, x.Role, x.Peer, x.Addr, x.Suite,
			time.Duration(x.KeyAgeNs).Truncate(time.Second), x.SendKeyUpdates, x.RecvKeyUpdates, x.Sealed, x.Opened,
			x.Replays, x.TooOld, x.AuthFailures, x.Expires.Sub(now).Truncate(time.Second))
	}
	if len(s.Sessions) == 0 {
		fmt.Fprintln(w, "\t(none)")
	}
	fmt.Fprintf(w, "handshakes\t%d completed\t%d refused\n", s.Handshakes, s.HandshakesRefused)
	fmt.Fprintln(w, "sealed frames refused\treason\tcount")
	for _, reason := range sortedKeys(s.Refused) {
		fmt.Fprintf(w, "\t%s\t%d\n", reason, s.Refused[reason])
	}
	if len(s.Refused) == 0 {
		fmt.Fprintln(w, "\t(none)")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func statusList(ms ...map[string]uint64) string {
	var parts []string
	for _, m := range ms {
		for _, k := range sortedKeys(m) {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func intsOrDash(xs []int) string {
	if len(xs) == 0 {
		return "-"
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func sumValues(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

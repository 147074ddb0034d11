package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/authz"
	"github.com/zerohop/zerohop/mesh/telemetry"
)

func init() {
	register(command{name: "acl", summary: "list, add, delete or load a running server's authorization rules and XDP ACL", run: runACL})
}

func runACL(args []string) int { return aclCommand(os.Stdout, os.Stderr, args) }

const aclUsage = `usage: zerohop acl list|add|del|load [flags]
  zerohop acl list --admin ADDR [--json]       the server's rules with their hits and XDP drops
  zerohop acl list --iface IF [--json]        the XDP ACL entries on IF with their hit counts
  zerohop acl add  --admin ADDR --action allow|deny [--name N] [--at I] [--source P,...]
                   [--caller C,...] [--service S,...] [--method M,...] [--message TEXT]
  zerohop acl add  --iface IF --source PREFIX [--port P] [--action deny|allow]
  zerohop acl del  --admin ADDR --name NAME
  zerohop acl del  --iface IF --source PREFIX [--port P]
  zerohop acl load --admin ADDR FILE           replace the server's policy with FILE
  zerohop acl load --iface IF --port P [--methods M,...] FILE
                                              write FILE's source rules for port P into the XDP ACL

--admin is a server's admin endpoint, as zerohop stat takes it (HOST:PORT or
unix:PATH of serve --admin, or the URL of serve --policy-admin); the policy API
is its /policy/ path. Without --admin or --iface, acl uses the only admin
socket of this network namespace, as stat and top do. --iface edits the XDP program's maps,
found through the interface by id: run it in the interface's network namespace
(ip netns exec NS zerohop acl ...), from any mount namespace. Entries written
with --iface for a port whose server has a policy are replaced at its next
reload: change that server's policy with --admin instead.`

type aclFlags struct {
	admin, iface string
	endpoint     telemetry.Endpoint // where the policy API is, for every verb but --iface
	json         bool
	port         uint
	name, action string
	at           int
	sources      string
	callers      string
	services     string
	methods      string
	message      string
}

func aclCommand(out, errOut io.Writer, args []string) int {
	fs := newFlags("acl", aclUsage)
	if len(args) == 0 {
		return fs.usageError(errOut, "give a verb: list, add, del or load")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fs.printUsage(out)
		return exitOK
	}
	verb := args[0]
	var f aclFlags
	fs.StringVar(&f.admin, "admin", "", "the server's admin endpoint: HOST:PORT, unix:PATH|@NAME, or the http:// URL of serve --policy-admin (default: the only admin socket in this network namespace)")
	fs.StringVar(&f.iface, "iface", "", "interface whose XDP ACL to read or edit")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.UintVar(&f.port, "port", 0, "destination port of the XDP entry (0: any port)")
	fs.StringVar(&f.name, "name", "", "rule name")
	fs.StringVar(&f.action, "action", "", "allow or deny")
	fs.IntVar(&f.at, "at", 0, "position of the new rule (0: the top, where it is tried first)")
	fs.StringVar(&f.sources, "source", "", "comma-separated source prefixes")
	fs.StringVar(&f.callers, "caller", "", "comma-separated CALLER names")
	fs.StringVar(&f.services, "service", "", "comma-separated service globs (pkg.Service)")
	fs.StringVar(&f.methods, "method", "", "comma-separated method globs (the part after '/'); with load --iface: the full names the server serves")
	fs.StringVar(&f.message, "message", "", "message sent with DENIED")
	fs.StringVar(&f.methods, "methods", "", "alias of --method")
	if code, done := fs.parse(args[1:], out, errOut); done {
		return code
	}
	if f.admin != "" && f.iface != "" {
		return fs.usageError(errOut, "--admin and --iface exclude each other: give the server's admin endpoint or the interface whose XDP ACL to edit")
	}
	if f.iface == "" {
		ep, err := aclEndpoint(f.admin)
		if err != nil {
			return fs.usageError(errOut, "%v", err)
		}
		f.endpoint = ep
	}
	useAdmin := f.iface == ""
	if f.port > 65535 {
		return fs.usageError(errOut, "--port %d: give 0..65535", f.port)
	}
	var err error
	switch {
	case verb == "list" && useAdmin:
		err = aclListAdmin(out, f)
	case verb == "list":
		err = aclListIface(out, f)
	case verb == "add" && useAdmin:
		err = aclAddAdmin(out, f)
	case verb == "add":
		err = aclEditIface(out, f, true)
	case verb == "del" && useAdmin:
		err = aclDelAdmin(out, f)
	case verb == "del":
		err = aclEditIface(out, f, false)
	case verb == "load":
		if fs.NArg() != 1 {
			return fs.usageError(errOut, "give the policy file: zerohop acl load ... FILE")
		}
		if useAdmin {
			err = aclLoadAdmin(out, f, fs.Arg(0))
		} else {
			err = aclLoadIface(out, f, fs.Arg(0))
		}
	default:
		return fs.usageError(errOut, "unknown verb %q (want list, add, del or load)", verb)
	}
	var usage aclUsageError
	if errors.As(err, &usage) {
		return fs.usageError(errOut, "%v", err)
	}
	if err != nil {
		return fail(errOut, "acl", fmt.Errorf("%s: %w", verb, err), nil)
	}
	return exitOK
}

// aclUsageError is a bad flag combination (exit 2).
type aclUsageError struct{ error }

func usagef(format string, args ...any) error { return aclUsageError{fmt.Errorf(format, args...)} }

// aclEndpoint is the admin endpoint --admin names (an http:// URL is
// serve --policy-admin's), or the only admin socket here.
func aclEndpoint(admin string) (telemetry.Endpoint, error) {
	if rest, ok := strings.CutPrefix(admin, "http://"); ok {
		admin = strings.TrimSuffix(rest, "/")
	}
	if admin == "" {
		ep, err := adminEndpoint("")
		if err != nil {
			return ep, usagef("no --admin or --iface, and %v: give --admin ADDR (serve --admin) or --iface IF", err)
		}
		return ep, nil
	}
	ep, err := telemetry.ParseEndpoint(admin)
	if err != nil {
		return ep, usagef("--admin %q: give HOST:PORT, unix:PATH or http://HOST:PORT", admin)
	}
	return ep, nil
}

// adminDo sends a request to the policy API at path (under /policy) and
// decodes its JSON answer into v; an answer other than 200 becomes an
// error with the server's message.
func adminDo(method string, ep telemetry.Endpoint, path string, body []byte, v any) error {
	req, err := http.NewRequest(method, "http://zerohop/policy"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := ep.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		return fmt.Errorf("admin endpoint %s: %w (is the server running?)", ep, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("policy admin API: reading the answer: %w", err)
	}
	if resp.StatusCode == http.StatusNotFound && path == "/" {
		return fmt.Errorf("admin endpoint %s has no policy API: start the server with --policy FILE, --shed or --policy-admin", ep)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("the server refused it (%s): %s", resp.Status, e.Error)
		}
		return fmt.Errorf("the server answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("policy admin API: the answer is not JSON: %w", err)
	}
	return nil
}

func aclListAdmin(out io.Writer, f aclFlags) error {
	var st policy.Stats
	if err := adminDo(http.MethodGet, f.endpoint, "/", nil, &st); err != nil {
		return err
	}
	if f.json {
		return printJSON(out, st)
	}
	fmt.Fprintf(out, "policy version %d from %s: %s\n\n", st.Version, orDash(st.Source), st.Summary)
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tRULE\tACTION\tLINE\tHITS\tXDP DROPS")
	for _, r := range st.Rules {
		idx, line := strconv.Itoa(r.Index+1), strconv.Itoa(r.Line)
		if r.Index < 0 {
			idx = "-"
		}
		if r.Line == 0 {
			line = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", idx, r.Name, r.Action, line, r.Hits, r.XDPDrops)
	}
	tw.Flush()
	if len(st.Limits) > 0 {
		fmt.Fprintln(out)
		tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "LIMIT\tMETHOD\tALLOWED\tLIMITED\tSHADOW LIMITED")
		for _, l := range st.Limits {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", l.Limit, orDash(l.Method), l.Allowed, l.Limited, l.ShadowLimited)
		}
		tw.Flush()
	}
	if st.Shed != nil {
		fmt.Fprintf(out, "\nshedder: %d admitted, %d refused, %d in flight\n", st.Shed.Admitted, st.Shed.Refused, st.Shed.InFlight)
	}
	if st.XDPPort != 0 {
		fmt.Fprintf(out, "\nXDP ACL for port %d: %d entries\n", st.XDPPort, len(st.XDP))
		printXDP(out, st.XDP)
	}
	if st.XDPError != "" {
		fmt.Fprintf(out, "XDP ACL: %s\n", st.XDPError)
	}
	return nil
}

func printXDP(out io.Writer, entries []policy.XDPEntry) {
	if len(entries) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tPORT\tACTION\tHITS")
	for _, e := range entries {
		port := strconv.Itoa(int(e.Port))
		if e.Port == 0 {
			port = "any"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", e.Source, port, e.Action, e.Hits)
	}
	tw.Flush()
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// openACL opens the XDP maps of the program attached to --iface, by id.
func openACL(iface string) (*bpf.Maps, error) {
	m, err := bpf.OpenAttached(iface)
	if errors.Is(err, bpf.ErrNotFound) {
		return nil, fmt.Errorf("%w (no zerohop XDP program on %s in this network namespace: run it inside the server's, e.g. ip netns exec NS zerohop acl ...)", err, iface)
	}
	return m, err
}

func aclListIface(out io.Writer, f aclFlags) error {
	m, err := openACL(f.iface)
	if err != nil {
		return err
	}
	defer m.Close()
	rules, err := m.ACLRules()
	if err != nil {
		return err
	}
	entries := []policy.XDPEntry{}
	for _, r := range rules {
		entries = append(entries, policy.XDPEntry{Source: r.Source.String(), Port: r.Port, Action: r.Action.String(), Hits: r.Hits})
	}
	if f.json {
		return printJSON(out, entries)
	}
	fmt.Fprintf(out, "XDP ACL on %s: %d entries\n", f.iface, len(entries))
	printXDP(out, entries)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func aclAddAdmin(out io.Writer, f aclFlags) error {
	if f.action == "" {
		return usagef("--action allow or --action deny is required")
	}
	// The rule travels as the file format's mapping, so the server checks
	// it exactly as it checks a file.
	rule := map[string]any{"action": f.action}
	if f.name != "" {
		rule["name"] = f.name
	}
	for key, v := range map[string]string{"sources": f.sources, "callers": f.callers, "services": f.services, "methods": f.methods} {
		if l := splitList(v); len(l) > 0 {
			rule[key] = l
		}
	}
	if f.message != "" {
		rule["message"] = f.message
	}
	body, _ := json.Marshal(rule)
	var res policy.LoadResult
	if err := adminDo(http.MethodPost, f.endpoint, "/rules?at="+strconv.Itoa(f.at), body, &res); err != nil {
		return err
	}
	return printLoad(out, res)
}

func aclDelAdmin(out io.Writer, f aclFlags) error {
	if f.name == "" {
		return usagef("--name NAME is required (the rule's name, as acl list shows it)")
	}
	var res policy.LoadResult
	if err := adminDo(http.MethodDelete, f.endpoint, "/rules/"+url.PathEscape(f.name), nil, &res); err != nil {
		return err
	}
	return printLoad(out, res)
}

func aclLoadAdmin(out io.Writer, f aclFlags, path string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Check locally first, so errors name the file's own lines.
	if _, err := policy.ParseDocument(path, body); err != nil {
		return err
	}
	var res policy.LoadResult
	if err := adminDo(http.MethodPut, f.endpoint, "/spec", body, &res); err != nil {
		return err
	}
	return printLoad(out, res)
}

func printLoad(out io.Writer, res policy.LoadResult) error {
	fmt.Fprintf(out, "policy version %d in force: %s\n", res.Version, res.Summary)
	if res.ACL != "" {
		fmt.Fprintln(out, res.ACL)
	}
	if res.ACLError != "" {
		return errors.New("the XDP ACL was not updated: " + res.ACLError)
	}
	return nil
}

func aclEditIface(out io.Writer, f aclFlags, add bool) error {
	if f.sources == "" {
		return usagef("--source PREFIX is required")
	}
	action := bpf.Deny
	switch f.action {
	case "", "deny":
	case "allow":
		action = bpf.Allow
	default:
		return usagef("--action %q: want allow or deny", f.action)
	}
	m, err := openACL(f.iface)
	if err != nil {
		return err
	}
	defer m.Close()
	for _, s := range splitList(f.sources) {
		p, err := parseSourcePrefix(s)
		if err != nil {
			return usagef("--source: %v", err)
		}
		if add {
			err = m.AddACLRule(bpf.ACLRule{Source: p, Port: uint16(f.port), Action: action})
		} else {
			err = m.RemoveACLRule(p, uint16(f.port))
		}
		if err != nil {
			return err
		}
		verb := "removed"
		if add {
			verb = "added " + action.String()
		}
		fmt.Fprintf(out, "%s %v port %d on %s\n", verb, p, f.port, f.iface)
	}
	return nil
}

func parseSourcePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a prefix nor an address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %v?", s, p.Masked())
	}
	return p, nil
}

// aclLoadIface compiles the file's source rules for one port, as the
// server would with the methods it serves, and writes them into the XDP
// ACL. Without --methods a file whose rules name services or methods
// cannot be compiled safely (a default deny would drop every source).
func aclLoadIface(out io.Writer, f aclFlags, path string) error {
	if f.port == 0 {
		return usagef("--port P is required: the policy's entries are for the server's port")
	}
	doc, err := policy.ReadDocument(path)
	if err != nil {
		return err
	}
	methods := splitList(f.methods)
	if len(methods) == 0 {
		for _, r := range doc.Authz.Rules {
			if len(r.Services) > 0 || len(r.Methods) > 0 {
				return usagef("%s names services or methods: give the full names the server serves with --methods, or load it through --admin", path)
			}
		}
	}
	p, err := authz.Compile(doc.Authz, methods, 1)
	if err != nil {
		return err
	}
	m, err := openACL(f.iface)
	if err != nil {
		return err
	}
	defer m.Close()
	want := p.L4(uint16(f.port))
	added, removed, err := authz.SyncACL(m, uint16(f.port), want)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "XDP ACL for port %d on %s: %d entries (%d written, %d removed)\n", f.port, f.iface, len(want), added, removed)
	for _, w := range p.Report().Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
	return nil
}

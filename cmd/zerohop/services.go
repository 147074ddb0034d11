package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/runtime"
)

func init() {
	register(command{name: "services", summary: "list the services the node table and an etcd registry hold", run: runServices})
}

func runServices(args []string) int {
	return servicesCommand(context.Background(), os.Stdout, os.Stderr, args)
}

const servicesUsage = `usage: zerohop services [--etcd ENDPOINTS] [--service NAME] [--no-node-table] [--timeout D]

Lists what discovery holds: the node's BPF service table (every zerohop
server on this node registered with --node-table) and, with --etcd, the
etcd registry (servers registered with --etcd). One line per endpoint:
source, service, address, health, weight, zone, version, and where it
comes from (node: server pid, network namespace, heartbeat age; etcd: the
key's lease).

Reading the node table needs CAP_SYS_ADMIN (root); without it the table is
skipped with a warning when --etcd is given.

Exit status: 0 when every source asked was read, 1 when one could not be
(a line on stderr per source says why and what to change; the table lists
what the others hold, and is left out when none was read), 2 for bad
flags.`

type serviceRow struct {
	source, service string
	addr            string
	health          string
	weight          uint32
	zone, version   string
	detail          string
}

func servicesCommand(ctx context.Context, out, errOut io.Writer, args []string) int {
	fs := newFlags("services", servicesUsage)
	endpoints := fs.String("etcd", "", "comma-separated etcd endpoints of the registry to list")
	prefix := fs.String("etcd-prefix", etcd.DefaultPrefix, "etcd key prefix of services")
	only := fs.String("service", "", "list only this service")
	noNode := fs.Bool("no-node-table", false, "do not read the node table")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for etcd")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fs.usageError(errOut, "unexpected argument %q: services takes only flags (--service NAME to list one)", fs.Arg(0))
	case *timeout <= 0:
		return fs.usageError(errOut, "--timeout %v: must be positive, e.g. --timeout 3s", *timeout)
	case *noNode && *endpoints == "":
		return fs.usageError(errOut, "--no-node-table without --etcd leaves nothing to list")
	}
	sig := signalContext(ctx)
	defer sig.stop()
	var rows []serviceRow
	var failed []error
	read := 0 // sources read, if only in part
	if !*noNode {
		r, err := nodeRows(*only)
		if err != nil {
			failed = append(failed, err)
		} else {
			read++
		}
		rows = append(rows, r...)
	}
	if *endpoints != "" {
		ectx, cancel := context.WithTimeout(sig, *timeout)
		r, got, err := etcdRows(ectx, strings.Split(*endpoints, ","), *prefix, *only)
		cancel()
		if sig.received() != nil {
			return sig.interrupted(errOut, "services", "")
		}
		if got {
			read++
		}
		if err != nil {
			failed = append(failed, etcdError(*endpoints, *prefix, *timeout, got, err))
		}
		rows = append(rows, r...)
	}
	// With no source read an empty table would read as "nothing is
	// registered": only the errors are printed then.
	if read > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tSERVICE\tENDPOINT\tHEALTH\tWEIGHT\tZONE\tVERSION\tDETAIL")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.source, r.service, r.addr, r.health, max(r.weight, 1), dash(r.zone), dash(r.version), r.detail)
		}
		tw.Flush()
	}
	if len(failed) > 0 {
		return fail(errOut, "services", errors.Join(failed...), nil)
	}
	return exitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nodeRows reads the node table.
func nodeRows(only string) ([]serviceRow, error) {
	t, err := bpf.OpenNodeTable(bpf.NodeOptions{HeartbeatInterval: -1})
	if err != nil {
		return nil, fmt.Errorf("node table: %w (run as root, or give --no-node-table)", err)
	}
	defer t.Close()
	entries, err := t.List()
	if err != nil {
		return nil, fmt.Errorf("node table: %w", err)
	}
	var rows []serviceRow
	for _, e := range entries {
		if only != "" && e.Service != only {
			continue
		}
		health := e.Health.String()
		if e.Stale {
			health += " (stale)"
		}
		rows = append(rows, serviceRow{source: "node", service: e.Service, addr: e.Addr.String(), health: health,
			weight: e.Weight, zone: e.Zone, version: e.Version,
			detail: fmt.Sprintf("pid=%d netns=%d heartbeat=%v ago", e.PID, e.NetnsInode, e.HeartbeatAge.Round(time.Millisecond))})
	}
	return rows, nil
}

// etcdError words a failure to read the registry for the user: which
// flag to look at and what to change.
func etcdError(endpoints, prefix string, timeout time.Duration, got bool, err error) error {
	switch {
	case got: // the registry answered; some keys did not decode
		return fmt.Errorf("--etcd %s: %w (is --etcd-prefix %s the prefix the servers register under?)", endpoints, err, prefix)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("--etcd %s: no answer within --timeout %v (%v): give etcd client URLs reachable from this network namespace, e.g. --etcd http://10.0.0.10:2379, or a longer --timeout", endpoints, timeout, err)
	}
	return fmt.Errorf("--etcd %s: %w: give etcd client URLs reachable from this network namespace, e.g. --etcd http://10.0.0.10:2379", endpoints, err)
}

// etcdRows reads every key under prefix. got reports whether the registry
// answered (the error is then about keys that do not decode).
func etcdRows(ctx context.Context, endpoints []string, prefix, only string) (rows []serviceRow, got bool, err error) {
	cfg := etcd.ClientConfig(endpoints...)
	cfg.Logger = zap.NewNop()
	cfg.Context = ctx
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, false, err
	}
	defer cli.Close()
	want := prefix
	if only != "" {
		want = etcd.ServicePrefix(prefix, only)
	}
	resp, err := cli.Get(ctx, want, clientv3.WithPrefix())
	if err != nil {
		return nil, false, fmt.Errorf("get %s: %w", want, err)
	}
	var bad []error
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		rest := strings.TrimPrefix(key, prefix)
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 {
			bad = append(bad, fmt.Errorf("key %q: not <prefix><service>/<addr>", key))
			continue
		}
		svc := rest[:i]
		ep, err := etcd.DecodeEndpoint(etcd.ServicePrefix(prefix, svc), key, kv.Value)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		detail := "no lease"
		if kv.Lease != 0 {
			detail = fmt.Sprintf("lease=%x", kv.Lease)
		}
		rows = append(rows, serviceRow{source: "etcd", service: svc, addr: ep.Addr.String(), health: healthName(ep.Health),
			weight: ep.Weight, zone: ep.Zone, version: ep.Version, detail: detail})
	}
	return rows, true, errors.Join(bad...)
}

func healthName(h runtime.EndpointHealth) string { return h.String() }

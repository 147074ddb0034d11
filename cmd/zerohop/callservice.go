package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/zerohop/zerohop/mesh"
	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/mesh/discovery/node"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/runtime"
)

// serviceFlags are call's flags for calling a service by name instead of
// an address: the name and where its endpoints come from.
type serviceFlags struct {
	service    string
	etcd       string
	etcdPrefix string
	nodeTable  bool
	endpoints  string
	eps        []runtime.Endpoint // parsed from endpoints by check
}

func addServiceFlags(fs *flag.FlagSet) *serviceFlags {
	f := &serviceFlags{}
	fs.StringVar(&f.service, "service", "", "call the service of this name instead of --addr (with --etcd, --node-table or --endpoints)")
	fs.StringVar(&f.etcd, "etcd", "", "comma-separated etcd endpoints to find --service in")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", etcd.DefaultPrefix, "etcd key prefix of services")
	fs.BoolVar(&f.nodeTable, "node-table", false, "find --service in the node's BPF service table")
	fs.StringVar(&f.endpoints, "endpoints", "", "comma-separated IP:PORT list of --service's endpoints (a static resolver)")
	return f
}

// check reports a usage error in the flags, given --addr.
func (f *serviceFlags) check(addr string) error {
	sources := 0
	for _, set := range []bool{f.etcd != "", f.nodeTable, f.endpoints != ""} {
		if set {
			sources++
		}
	}
	switch {
	case f.service == "" && sources > 0:
		return errors.New("--etcd, --node-table and --endpoints say where --service is found: give --service NAME too")
	case f.service == "":
		return nil
	case addr != "":
		return errors.New("--addr and --service exclude each other: call an address, or a service by name")
	case sources != 1:
		return errors.New("--service needs exactly one of --etcd ENDPOINTS, --node-table or --endpoints IP:PORT,…")
	}
	if f.endpoints != "" {
		for _, s := range strings.Split(f.endpoints, ",") {
			ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
			if err != nil || ap.Port() == 0 {
				return fmt.Errorf("--endpoints: %q is not IP:PORT (e.g. 10.0.0.1:7000,10.0.0.2:7000)", s)
			}
			f.eps = append(f.eps, runtime.Endpoint{Addr: ap})
		}
	}
	return nil
}

// dial returns a client of --service through mesh.DialService (p2c,
// health checks, failover) with opts, and what to close after it.
func (f *serviceFlags) dial(opts ...runtime.ClientOption) (*runtime.Client, func(), error) {
	var resolver runtime.ResolverBuilder
	done := func() {}
	switch {
	case f.endpoints != "":
		resolver = static.New(f.eps...)
	case f.nodeTable:
		b, err := node.NewBuilder()
		if err != nil {
			return nil, done, fmt.Errorf("--node-table: %w", err)
		}
		resolver, done = b, func() { b.Close() }
	default:
		cfg := etcd.ClientConfig(strings.Split(f.etcd, ",")...)
		cfg.Logger = zap.NewNop()
		cli, err := clientv3.New(cfg)
		if err != nil {
			return nil, done, fmt.Errorf("--etcd %s: %w", f.etcd, err)
		}
		b, err := etcd.NewBuilder(cli, etcd.WithPrefix(f.etcdPrefix))
		if err != nil {
			cli.Close()
			return nil, done, errors.New(withFlagNames(err.Error(), map[string]string{"WithPrefix": "--etcd-prefix"}))
		}
		resolver, done = b, func() { cli.Close() }
	}
	c, err := mesh.DialService(f.service, resolver, opts...)
	if err != nil {
		done()
		return nil, func() {}, err
	}
	return c, done, nil
}

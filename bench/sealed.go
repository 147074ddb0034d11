package bench

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
	"github.com/zerohop/zerohop/runtime"
)

// The sealed-frame variant: zerohop-xsk-sealed serves with `serve
// --identity --require-sealed`, and since neither the kernel-UDP nor the
// XSK load can seal, only the runtime-client load drives it, with a
// ClientSealer (ClientConfig.Identity). Its ratio to zerohop-xsk under the
// same runtime-client load is the cost of sealing.
const VariantXSKSealed = "zerohop-xsk-sealed"

func init() {
	AllVariants = append(AllVariants, VariantXSKSealed)
	EngineLoadVariants = append(EngineLoadVariants, VariantXSKSealed, VariantXSKDialService)
}

// engineOnlyLoad is false for a load other than the runtime-client one
// on the variants only it can drive: the sealed one (no other load seals)
// and the dialservice one (no other load calls by name).
func engineOnlyLoad(name, load string) bool {
	return name != VariantXSKSealed && name != VariantXSKDialService || load == LoadEngine
}

// benchIdentities writes a test CA's identity directories for the sealed
// variant's server and load into dir: what `serve --identity` and
// `bench-client --identity` read.
func benchIdentities(dir string) (server, client string, err error) {
	ca, err := identitytest.NewCA("bench.zerohop")
	if err != nil {
		return "", "", err
	}
	for _, d := range []struct {
		path *string
		name string
		id   string
	}{{&server, "server", "spiffe://bench.zerohop/ns/bench/sa/echo"}, {&client, "client", "spiffe://bench.zerohop/ns/bench/sa/load"}} {
		svid, err := ca.IssueFor(d.id, 24*time.Hour)
		if err != nil {
			return "", "", err
		}
		*d.path = filepath.Join(dir, "identity-"+d.name)
		if err := os.MkdirAll(*d.path, 0o700); err != nil {
			return "", "", err
		}
		if err := identitytest.WriteDir(*d.path, svid, ca); err != nil {
			return "", "", err
		}
	}
	return server, client, nil
}

// startSealedServers is startServers for the variants of this file; ok is
// false for any other variant.
func (h *harness) startSealedServers(name, gwirAddr string, cores, queues []int) (procs []*serverProc, load, addr, skip string, ok bool) {
	if name != VariantXSKSealed {
		return nil, "", "", "", false
	}
	if h.topology == nil {
		if !h.root {
			return nil, "", "", "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF) for the veth topology and AF_XDP", true
		}
		return nil, "", "", "needs the veth topology (loopback run)", true
	}
	args := []string{"serve", "--addr", gwirAddr, "--queues", joinInts(queues), "--cores", joinInts(cores[:len(queues)]), "--backend", "xsk"}
	server, client, err := benchIdentities(h.tmp)
	if err != nil {
		return nil, "", "", "identities: " + err.Error(), true
	}
	args = append(args, "--identity", server, "--require-sealed")
	h.clientIdentity = client
	if h.serverIface != "" {
		args = append(args, "--iface", h.serverIface)
	}
	if h.cfg.CPUProfileDir != "" {
		prof, _ := filepath.Abs(filepath.Join(h.cfg.CPUProfileDir, name+".pprof"))
		args = append([]string{"bench-server", "--kind", "zerohop", "--cpuprofile", prof, "--"}, args...)
	}
	p, err := h.start(h.server.command(cores, h.cfg.Exe, args...))
	if err != nil {
		return nil, "", "", err.Error(), true
	}
	return []*serverProc{p}, LoadGWIR, gwirAddr, "", true
}

// clientArgs are the bench-client flags a load kind needs beyond the
// common ones.
func (h *harness) clientArgs(load string) []string {
	var args []string
	if load == LoadEngine && h.clientIdentity != "" {
		args = append(args, "--identity", h.clientIdentity)
	}
	if load == LoadEngine && h.clientService != "" {
		args = append(args, "--service", h.clientService)
	}
	return args
}

// dialServiceName is the service the dialservice variant's load calls by
// name: the echo service's.
const dialServiceName = "zerohop.Echo"

// engineSealer is the runtime-client load's sealer for an identity
// directory: a client of any server of the same trust domain.
func engineSealer(dir string) (runtime.ClientSealer, error) {
	src, err := identity.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bench client: %w", err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("bench client: %w", err)
	}
	table, err := identity.NewTable(identity.TableConfig{})
	if err != nil {
		return nil, err
	}
	cl, err := identity.NewClient(&identity.Config{Source: src, Allow: identity.AllowTrustDomain(svid.ID.TrustDomain()),
		Table: table, Logger: discardLogger()})
	if err != nil {
		return nil, fmt.Errorf("bench client: %w", err)
	}
	return cl, nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

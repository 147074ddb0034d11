package bench

import (
	"fmt"
	"strings"

	"github.com/zerohop/zerohop/internal/topo"
	"golang.org/x/sys/unix"
)

// GWIR load generators, as the report's "load" column and --load name
// them. A GWIR server variant is measured once per selected load; the
// HTTP variants always run under LoadHTTP.
const (
	// LoadKernelUDP is the kernel-UDP client (sendmmsg/recvmmsg on one
	// socket); its bench-client kind is LoadGWIR.
	LoadKernelUDP = "kernel-udp"
	// LoadXSK is the AF_XDP client: batched TX/RX on an XSK socket on the
	// client's veth, frames built by netstack.BuildUDP. Needs the veth
	// topology (root).
	LoadXSK = "xsk"
	// LoadEngine is zerohop's own client engine (runtime.NewEngine)
	// keeping N calls outstanding with Client.Go from one goroutine. It
	// drives only the variants in EngineLoadVariants.
	LoadEngine = "runtime-client"
)

// AllGWIRLoads lists the GWIR loads in the order the harness runs them.
var AllGWIRLoads = []string{LoadKernelUDP, LoadXSK, LoadEngine}

// EngineLoadVariants are the server variants the runtime-client load
// drives: zerohop against itself, and the plain Go baseline of the same
// protocol.
var EngineLoadVariants = []string{VariantXSK, VariantNetUDP}

// ParseLoads reads a comma-separated list of GWIR loads ("kernel" is
// short for kernel-udp, "engine" for runtime-client, "all" for every
// one), in AllGWIRLoads order without duplicates.
func ParseLoads(s string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		switch name = strings.TrimSpace(name); name {
		case "all":
			for _, l := range AllGWIRLoads {
				want[l] = true
			}
		case "kernel", LoadKernelUDP:
			want[LoadKernelUDP] = true
		case LoadXSK:
			want[LoadXSK] = true
		case "engine", LoadEngine:
			want[LoadEngine] = true
		default:
			return nil, fmt.Errorf("unknown load %q: want %s (or all)", name, strings.Join(AllGWIRLoads, ", "))
		}
	}
	var out []string
	for _, l := range AllGWIRLoads {
		if want[l] {
			out = append(out, l)
		}
	}
	return out, nil
}

// clientKind is the bench-client --kind that generates load.
func clientKind(load string) string {
	if load == LoadKernelUDP {
		return LoadGWIR
	}
	return load
}

// variantServerLoad is the protocol a variant's server speaks (LoadGWIR
// or LoadHTTP), for planning the run before its servers start.
func variantServerLoad(name string) string {
	if name == VariantNetHTTP || name == VariantSidecar {
		return LoadHTTP
	}
	return LoadGWIR
}

// loadsFor lists the loads that drive a variant whose server speaks
// serverLoad: HTTP variants get the HTTP client, GWIR variants every
// selected GWIR load that applies to them.
func loadsFor(name, serverLoad string, selected []string) []string {
	if serverLoad == LoadHTTP {
		return []string{LoadHTTP}
	}
	var out []string
	for _, l := range selected {
		if l == LoadEngine && !contains(EngineLoadVariants, name) || !engineOnlyLoad(name, l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// XSKLoadAvailable reports whether a run with these settings can use the
// XSK load: as root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF), with the
// veth topology (not forceLoopback).
func XSKLoadAvailable(forceLoopback bool) bool {
	return !forceLoopback && topo.MissingCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_BPF) == ""
}

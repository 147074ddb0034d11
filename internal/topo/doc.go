// Package topo builds throwaway network topologies for tests and the bench
// harness: network namespaces joined by veth pairs, with unique names, torn
// down through t.Cleanup (New, Pair) even when the test fails or panics, or by
// the caller through Close (Build) on every exit path.
//
// A Topology is a star: host 0 ("the server") is joined to every other host
// by its own veth pair, each pair on its own /24 (and /64) subnet. Options
// set the queue count of the veths, MTU, TX checksum offload and XPS so a
// sender's TX queue i lands on the peer's RX queue i.
//
// Code runs inside a host's namespace with Host.Do (a locked OS thread that
// enters the namespace and leaves it afterwards) or as a subprocess through
// Host.Command. Without root the test constructors skip the test, naming the
// missing capability, and Build returns an error wrapping ErrNotPermitted; as
// root, any failure to build the topology fails the test (or is returned by
// Build after removing whatever was made). With ZEROHOP_REQUIRE_KERNEL_TESTS=1
// (scripts/test sets it as root) RequireRoot and SkipMissing fail instead of
// skipping, so a CI run cannot pass with kernel tests skipped.
//
// The constructors take TB, the subset of testing.TB they use, so that this
// package does not link package testing into binaries (the bench harness).
package topo

// Package topo builds throwaway network topologies for tests: network
// namespaces joined by veth pairs, with unique names per test, torn down
// through t.Cleanup even when the test fails or panics.
//
// A Topology is a star: host 0 ("the server") is joined to every other host
// by its own veth pair, each pair on its own /24 (and /64) subnet. Options
// set the queue count of the veths, MTU, TX checksum offload and XPS so a
// sender's TX queue i lands on the peer's RX queue i.
//
// Code runs inside a host's namespace with Host.Do (a locked OS thread that
// enters the namespace and leaves it afterwards) or as a subprocess through
// Host.Command. Without root the constructors skip the test, naming the
// missing capability; as root, any failure to build the topology fails it.
package topo

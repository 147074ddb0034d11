// Package discovery holds what every zerohop resolver needs, whatever its
// source: a Set of endpoints keyed by the source's own identity that turns
// into a complete, ordered runtime.ResolverState; a Conn that sits between
// a resolver's goroutines and the runtime.ResolverConn it was built with;
// a bounded, jittered Backoff for retrying a source that is unreachable;
// and Counters that a builder's Stats method reads.
//
// The sources themselves are subpackages, one per dependency, so that a
// program imports only the client libraries of the sources it uses:
//
//   - static: a fixed list, or a file watched for changes;
//   - etcd: a Registry (lease, keep-alive, re-registration) and a resolver
//     doing a prefix get and a watch;
//   - kubernetes: EndpointSlices of a Service through a shared informer;
//   - node: the node's BPF service table (a resolver and a Registry), for
//     same-node calls with no control plane.
//
// Contract shared by those resolvers (and expected of any built on Conn):
// every update is a complete state (never a delta), pushed from the
// resolver's own goroutine and never from inside Build; an update equal
// to the last one is not pushed again unless an error was reported in
// between (so the client learns the source recovered); after Close
// returns nothing more reaches the ResolverConn. A source that fails
// reports the error and pushes nothing, so the client keeps the last
// endpoints it had.
package discovery

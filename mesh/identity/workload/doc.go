// Package workload is the identity source of a workload that has a SPIFFE
// Workload API agent (SPIRE's agent, or any server of the Workload API):
// its X.509-SVID and trust bundles arrive over the agent's gRPC socket
// and are kept current as the agent rotates them, through go-spiffe's
// workloadapi.X509Source. A Source implements identity.Source.
//
// It is its own package because it brings gRPC: a workload that loads its
// identity from files (identity.LoadDir) does not link it.
//
// Errors: New fails when no agent answers within the context, naming the
// socket and the fix (is the agent running, is SPIFFE_ENDPOINT_SOCKET or
// the socket option right); later failures of the stream are retried by
// go-spiffe while the last SVID stays in force.
package workload

// Package node resolves services from the node's service table, the BPF
// hash map that every zerohop process on one kernel shares
// (bpf.OpenNodeTable), and registers servers in it: clients on a node
// find the servers on the same node with no control plane at all.
//
// # Registry
//
// Registry.Register opens a handle on the table of its own, writes the
// endpoint (service, address, version, zone, weight, health) for the
// calling thread's network namespace, and keeps it alive with the table's
// heartbeats (bpf.DefaultNodeHeartbeatInterval, 1 s). Deregister closes
// that handle, which deletes the entry at once. A server that dies
// without deregistering leaves an entry whose heartbeat stops: clients
// leave it out after bpf.NodeStaleAfter (3 s, the default etcd lease TTL,
// so both paths drop a dead server alike), and the next Sweep of any
// zerohop process deletes it. The handle's heartbeat errors (an entry
// another process took over) are logged at WARN.
//
// # Resolver
//
// A Builder's resolver lists the table every interval (WithInterval,
// default 250 ms: a BPF map has no change notification) and pushes the
// service's entries that are not stale. Health maps as serving → serving,
// draining → draining, not serving → unhealthy. An entry registered from
// another network namespace with a loopback address (127.0.0.0/8, ::1)
// is left out: that address means the other namespace's loopback, which
// this client cannot reach. Other addresses are kept: whether a client in
// one namespace reaches a server in another depends on routing between
// them, which the table does not know. Attributes carry the entry's
// server pid (AttrPID), network namespace inode (AttrNetns) and XDP
// interface index (AttrIfindex).
//
// A failing List (the table cannot be read) is reported once per outage
// and counted (Builder.Stats); the last endpoints stay.
//
// # Privileges
//
// Opening the table walks the host's BPF map ids, which needs
// CAP_SYS_ADMIN (and CAP_BPF to create it); without them NewBuilder and
// Register fail with the bpf package's error naming the capability.
package node

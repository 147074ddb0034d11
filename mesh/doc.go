// Package mesh is the root of zerohop's service mesh: discovery, health,
// load balancing and policy that plug into runtime through the interfaces
// runtime defines (ResolverBuilder, Registry, BalancerBuilder, Picker,
// Interceptor), the way grpc-go's resolvers and balancers plug into grpc.
//
// runtime never imports mesh: a program that imports only runtime carries
// none of the mesh's dependencies (etcd's client, client-go). Each
// implementation lives in a package of its own under mesh/ so that a
// program pays only for the sources it uses:
//
//   - mesh/discovery: the shared plumbing of resolvers (Set, Conn,
//     Backoff, Counters);
//   - mesh/discovery/static: a fixed list, or a file watched for changes;
//   - mesh/discovery/etcd: a Registry with leases and a watching resolver;
//   - mesh/discovery/kubernetes: EndpointSlices through a shared informer;
//   - mesh/discovery/node: the node's BPF service table, for same-node
//     calls without a control plane;
//   - mesh/balance: p2c over peak-EWMA (the default) and round robin;
//   - mesh/health: active probes and passive outlier ejection around a
//     balancer.
//
// This package itself holds the one-call default: DialService is
// runtime.DialService with the balancer the mesh recommends, health
// checking around p2c, so that a program gets discovery, balancing,
// health and failover by naming a service and a resolver.
package mesh

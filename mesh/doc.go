// Package mesh is the root of zerohop's service mesh: discovery, health,
// load balancing and policy that plug into runtime through the interfaces
// runtime defines (ResolverBuilder, Registry, and later Picker and
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
//   - mesh/discovery/kubernetes: EndpointSlices through a shared informer.
//
// mesh itself holds no code.
package mesh

// Package kubernetes resolves a service to the endpoints of a Kubernetes
// Service, read from its EndpointSlices (discovery.k8s.io/v1) through a
// client-go shared informer.
//
// A Builder watches one namespace. Build(service) maps the zerohop service
// name to a Kubernetes Service name (WithServiceName; the name as given by
// default, and "pkg.Echo" is not a valid Service name, so most programs
// set one), runs an informer on the EndpointSlices labelled
// kubernetes.io/service-name=<name>, and after the informer's first full
// list, and after every add, update and delete, pushes every endpoint of
// every slice as one state. ResolveNow recomputes from the informer's
// cache; the informer itself lists again only when its watch breaks.
//
// # Mapping
//
// Port: the slice port whose name WithPort gives; with no name given, a
// slice's only port, or else its unnamed one. The Service port's protocol
// is not checked (a name is unique per Service). A slice without the port
// is left out, and when slices exist but none has it, that is reported
// (ReportError) once.
//
// Address: the first of an endpoint's addresses (the API defines no
// meaning for the others, and kube-proxy ignores them). Slices of type
// IPv4 and IPv6 both count, so a dual-stack Service gives each pod twice,
// once per family; FQDN slices are left out. The same address and port in
// two slices (an endpoint moving between slices) is kept once, with the
// better health.
//
// Health, from the endpoint's conditions, with the API's defaults for
// absent ones (ready and serving: true; terminating: false), as the
// EndpointSlice documentation defines them
// (https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/#conditions):
//
//	ready                              → runtime.HealthServing
//	not ready, serving and terminating → runtime.HealthDraining
//	anything else (not serving)        → runtime.HealthUnhealthy
//
// "ready" is what kube-proxy routes new connections to; a terminating pod
// that still passes its readiness probe is serving but not ready, and
// kube-proxy falls back to such endpoints only when no ready endpoint is
// left (KEP-1669, proxy terminating endpoints), which is what
// HealthDraining means to a picker. Unhealthy
// endpoints stay in the state (never picked) so that tools can show them.
// A Service with publishNotReadyAddresses has every endpoint ready, and so
// serving, by design.
//
// Zone: the endpoint's zone goes into Endpoint.Zone; topology hints
// (hints.forZones, hints.forNodes: the zones and nodes whose clients
// should use this endpoint) into the attributes AttrForZones and
// AttrForNodes, comma-separated. The slice, pod, node and hostname go into
// AttrSlice, AttrPod, AttrNode and AttrHostname.
//
// # Errors
//
// When the informer's list or watch fails (API server unreachable, RBAC
// denies it), the error is reported once until the next event, the client
// keeps the last endpoints, and client-go retries with its own backoff.
//
// # Running it
//
// The tests use client-go's fake clientset: there is no API server on
// the machines this project is built on. Against a real cluster, give
// NewBuilder a clientset from rest.InClusterConfig (in a pod; its service
// account needs get, list and watch on endpointslices.discovery.k8s.io in
// the namespace) or, outside one, from a kubeconfig
// (k8s.io/client-go/tools/clientcmd.BuildConfigFromFlags("", path));
// docs/discovery.md has the RBAC role and an example.
package kubernetes

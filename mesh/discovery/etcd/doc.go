// Package etcd announces servers in etcd and resolves services from it,
// with go.etcd.io/etcd/client/v3.
//
// # Key layout
//
// A server of service S listening at ADDR is one key:
//
//	<prefix><S>/<ADDR>   e.g. /zerohop/services/pkg.Echo/10.0.0.1:7000
//
// with the default prefix "/zerohop/services/" (WithPrefix), ADDR as
// netip.AddrPort prints it ("10.0.0.1:7000", "[fd00::1]:7000"), and a JSON
// value (EncodeEndpoint, DecodeEndpoint):
//
//	{"addr":"10.0.0.1:7000","weight":3,"zone":"eu-west-1a","version":"1.4.2",
//	 "health":"serving","attributes":{"pod":"echo-1"}}
//
// addr is required and must equal the key's last segment; weight (0 or
// absent counts as 1), zone, version, health ("serving", "draining",
// "unhealthy"; absent: serving) and attributes are optional. The key is
// attached to a lease of its server, so it disappears when the server
// stops renewing it. Anyone may write such keys (etcdctl put), and a
// service's endpoints are exactly the keys under "<prefix><S>/".
//
// # Registry
//
// Registry.Register grants a lease (TTL from WithTTL, default 3 s; etcd
// counts whole seconds, so the TTL is rounded up), puts the key with it
// and keeps the lease alive from a goroutine of its own. When the lease
// is lost — etcd said it expired or was revoked, or no renewal got
// through for a whole TTL (etcd unreachable, restarted without its data)
// — the registration grants a new lease and puts the key again, retrying
// with discovery.Backoff and logging each failed attempt at WARN, until
// it succeeds or is withdrawn. Register itself retries the same way until
// its context ends, so a context without deadline waits for etcd to come
// up and one with a deadline bounds the wait. Deregister stops the
// renewals and revokes the lease, which deletes the key at once; if etcd
// cannot be reached the key still goes when the lease expires, one TTL
// later.
//
// # Resolver
//
// A Builder's resolver gets every key under the service's prefix, pushes
// the complete set, and watches the prefix from the revision after that
// get, pushing the complete set again after each batch of puts and
// deletes. It gets everything again (and watches from there) when the
// watch says the revision it wants was compacted, when the watch breaks,
// on ResolveNow, and when etcd becomes reachable after an outage. Every
// probe interval (WithProbeInterval, default 1 s) it reads the count of
// the service's keys: etcd's client retries a broken watch silently
// forever, so this read is how an outage is seen. When a get or probe
// fails, the resolver reports the error once per outage (the client
// keeps the last endpoints it had and logs it), counts every failure
// (Builder.Stats), and retries with discovery.Backoff. A key whose value
// does not decode is left out, and reported, without holding up the
// others.
//
// # Client
//
// Both take a *clientv3.Client that stays the caller's. Make it from
// ClientConfig: gRPC's default reconnect backoff grows to 120 s, and a
// client that has waited out a long outage would take up to that long to
// notice etcd is back; ClientConfig caps it at 3 s.
//
// Tests run an embedded etcd (go.etcd.io/etcd/server/v3/embed) on
// loopback, and Debian's etcd binary where it is installed
// (scripts/test installs the etcd-server package).
package etcd

// Package telemetry observes a zerohop process from outside its data
// path: Prometheus collectors over the runtime's counters, OpenTelemetry
// server spans, and the admin HTTP endpoint that serves them with pprof,
// health and a JSON snapshot for `zerohop stat` and `zerohop top`.
//
// Contract:
//
//   - Nothing here counts on the request path. Collector reads
//     runtime.Server.Stats (snapshots of atomic counters), the steering
//     program's maps and the client's counters when scraped, so each event
//     is counted once, by the runtime; scraping takes no lock an event loop
//     takes. docs/metrics.md lists every metric; a test keeps that list and
//     what the collectors export identical.
//   - A metric nobody feeds is not registered: a ClientSource says which
//     parts of ClientStats it covers (ClientCoverage). Clients, the source
//     over runtime.Clients, covers their endpoints' transport counters
//     only; per-method call counters, endpoint states and breakers wait
//     for a source that keeps them.
//   - Tracer.Middleware samples each request once, parent-based (a
//     caller's TRACE decides; Ratio for requests without one), and costs an
//     unsampled request no allocation. A sampled loop request is recorded
//     into a preallocated ring without allocating and becomes a span off
//     the loop; a sampled blocking request gets its span in the handler's
//     context. Spans leave over OTLP/HTTP. Tracer also implements
//     runtime.CallTracer, the client engine's per-call hook (runtime.WithCallTracer).
//   - Admin serves /metrics, /stat, /healthz and /debug/pprof/ on an
//     abstract unix socket named after the server's address (SocketName;
//     found by tools in the same network namespace, whatever their mount
//     namespace; served only to root and the server's user) and, when
//     asked, on a TCP address or a socket path. Handle mounts further
//     routes (the policy API).
//
// The runtime cannot import this package, so the pieces plug in from the
// application's main: Tracer.Option (a runtime.Option) at Listen, then
// Serve (or NewAdmin and Start) with the Server.
//
// Errors name the option or flag at fault. A failed read of the XDP maps
// is not an error of the scrape: zerohop_xdp_up says 0 and /stat carries
// the error text.
package telemetry

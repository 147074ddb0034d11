// Package bench is the harness behind `zerohop bench`: it builds a client
// namespace ↔ veth ↔ server namespace topology, starts each server variant
// in turn as a subprocess pinned to the server core(s), drives it from a
// load-generator subprocess pinned to the client core with a closed loop of
// N outstanding requests, and reports requests/s, HDR-histogram latency
// quantiles, server CPU seconds per million requests, server RSS, errors and
// the load generator's own CPU, each also as a ratio to bare net/http from
// the same run.
//
// Variants: zerohop on AF_XDP ("zerohop-xsk"), the same with the mesh
// policies on ("zerohop-xsk+policies": BenchPolicy and the shedder), the
// same server loaded through zerohop's own client by address
// ("zerohop-xsk+dial", runtime.Dial) and by service name
// ("zerohop-xsk+dialservice", mesh.DialService over a static resolver of
// the one endpoint, p2c and health checks on), zerohop on io_uring sockets
// ("zerohop-uring"), a plain Go net.UDPConn server speaking GWIR
// ("netudp", the baseline for the same protocol without zerohop), a
// keep-alive net/http server ("nethttp"), the same
// behind nginx as a sidecar reverse proxy ("nethttp-sidecar") and a raw
// AF_XDP header-swapping echo loop with no GWIR parsing ("raw-xsk", the
// ceiling for this machine).
//
// Subprocesses are the caller's binary (Config.Exe) run with the
// subcommands `serve`, `bench-server` and `bench-client`; ServeNetUDP,
// ServeNetHTTP, ServeRawXSK and RunClient are their bodies. A client prints "measure-start"
// and "measure-end" on stdout around its measured window, so the harness
// samples the server's CPU exactly over it, then one JSON ClientResult line.
//
// Errors: Run fails only when the harness itself cannot run (topology,
// context cancelled); a variant that cannot run is reported with Skipped set
// to the reason, and a point whose client failed carries Error. Run removes
// the topology and stops every subprocess on every exit path.
package bench

// Package bench is the harness behind `zerohop bench`: it builds a client
// namespace ↔ veth ↔ server namespace topology, starts each server variant
// in turn as a subprocess pinned to the server core(s), drives it from a
// load-generator subprocess pinned to the client core with a closed loop of
// N outstanding requests, and reports requests/s, HDR-histogram latency
// quantiles, server CPU seconds per million requests, server RSS, errors and
// the load generator's own CPU (per million requests and per wall second,
// from /proc like the server's), each also as a ratio to bare net/http from
// the same run.
//
// Loads: a GWIR variant is measured once per selected load generator
// (Config.Loads), one VariantResult each, its Load naming the generator:
// the kernel-UDP client ("kernel-udp": sendmmsg/recvmmsg), the AF_XDP
// client ("xsk": frames built with netstack.BuildUDP and sent from an XSK
// socket on the client's veth, replies steered to it by the bpf program),
// and zerohop's client engine ("runtime-client", for EngineLoadVariants
// only). HTTP variants run under the HTTP client ("http").
//
// Variants: zerohop on AF_XDP ("zerohop-xsk"), the same with the mesh
// policies on ("zerohop-xsk+policies": BenchPolicy and the shedder), the
// same with its admin endpoint scraped (GET /metrics) once a second during
// the run ("zerohop-xsk-telemetry", the cost of telemetry), the same server
// called by service name through the runtime-client load
// ("zerohop-xsk+dialservice": mesh.DialService over a static resolver of
// the one endpoint, p2c and health checks on; its ratio to zerohop-xsk
// under the same load, which dials by address, is the cost of calling by
// name), zerohop on io_uring sockets
// ("zerohop-uring"), a plain Go net.UDPConn server speaking GWIR
// ("netudp", the baseline for the same protocol without zerohop), the
// same echo on gnet's UDP event loop ("gnet"), a keep-alive net/http
// server ("nethttp"), the same
// behind nginx as a sidecar reverse proxy ("nethttp-sidecar") and a raw
// AF_XDP header-swapping echo loop with no GWIR parsing ("raw-xsk", the
// ceiling for this machine). Sealed frames (sealed.go): zerohop on AF_XDP
// with --identity --require-sealed driven by the runtime's client engine
// sealing every call ("zerohop-xsk-sealed"), and the same server and load
// without identities ("zerohop-xsk-rtclient"), so that the cost of
// sealing is the ratio of the two (the kernel-UDP load generator of the
// other GWIR variants cannot seal).
//
// Subprocesses are the caller's binary (Config.Exe) run with the
// subcommands `serve`, `bench-server` and `bench-client`; ServeNetUDP,
// ServeGnet, ServeNetHTTP, ServeRawXSK and RunClient are their bodies. A client prints "measure-start"
// and "measure-end" on stdout around its measured window, so the harness
// samples the server's and the client's CPU exactly over it, then one JSON
// ClientResult line.
//
// Errors: Run fails only when the harness itself cannot run (topology,
// context cancelled); a variant, or a load, that cannot run (the XSK load
// on a loopback run) is reported with Skipped set to the reason, and a
// point whose client failed carries Error. Run removes
// the topology and stops every subprocess on every exit path.
package bench

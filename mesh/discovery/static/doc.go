// Package static resolves a service to endpoints that do not come from a
// control plane: a fixed list (New), or a file that is watched for changes
// (File).
//
// # File format
//
// One endpoint per line; blank lines and everything from '#' to the end of
// a line are ignored; fields are separated by spaces or tabs:
//
//	# address         options (any order, each at most once)
//	10.0.0.1:7000     weight=3 zone=eu-west-1a version=1.4.2
//	[fd00::2]:7000    zone=eu-west-1b health=draining attr.pod=echo-2
//	10.0.0.3:7000
//
// The address is an IPv4 address or a bracketed IPv6 address with a port
// other than 0 (netip.ParseAddrPort, without an IPv6 zone; an IPv4-mapped
// IPv6 address is taken as its IPv4 address). The options are weight=N (an unsigned 32-bit
// decimal; 0 or absent counts as 1), zone=Z, version=V,
// health=serving|draining|unhealthy (absent: serving) and attr.KEY=VALUE
// for Endpoint.Attributes. A value runs from the first '=' to the end of
// the field and must not be empty. An unknown option, a repeated option or
// a repeated address is an error. Format writes this format, so a program
// can produce files that Parse reads back unchanged.
//
// # Watching
//
// A file resolver polls: every interval (WithInterval, default 1 s) it
// stats the path and, when the modification time, size, inode or device
// changed, reads the file and compares a SHA-256 of its content with the
// last content it parsed; only new content is parsed and pushed. Polling
// rather than inotify because it follows what the path names now, which is
// how Kubernetes ConfigMap volumes and editors that write a new file and
// rename it over the old one replace a file (inotify on the old inode would
// miss it), and because it needs no descriptor held open. The cost is up
// to one interval of delay, and an edit that keeps size and modification
// time (a filesystem with coarse timestamps, two writes in one tick) is
// seen only at the next change or ResolveNow, which always reads.
//
// # Errors
//
// Build fails if the file cannot be read or parsed at first, naming the
// file and line, so a wrong path shows at Dial. Later, a file that
// disappears or stops parsing is reported through ReportError once (a
// *ParseError names the file, line and field) and the last good endpoints
// stay in force; the next good content is pushed as usual.
package static

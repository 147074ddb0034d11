// Package benchplot draws the bench harness's results: p99 latency against
// throughput, one line per variant. It is apart from package bench so that
// programs using the harness do not link the plotting stack: gonum/plot
// with its fonts and PDF/SVG back ends made 7.6 of the zerohop binary's
// 21.2 MB (13.6 MB without it, go1.26 linux/amd64, not stripped). zerohop
// links it only when built with -tags plot.
package benchplot

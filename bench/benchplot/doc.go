// Package benchplot draws the bench harness's results: p99 latency against
// throughput, one line per variant. It is apart from package bench so that
// programs using the harness do not link the plotting stack (gonum/plot
// and its fonts, about a quarter of the zerohop binary): zerohop links it
// only when built with -tags plot.
package benchplot

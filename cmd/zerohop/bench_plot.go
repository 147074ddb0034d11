//go:build plot

package main

import "github.com/zerohop/zerohop/bench/benchplot"

// Built with -tags plot, `zerohop bench --plot FILE.png` draws the results.
func init() { writePlot = benchplot.Write }

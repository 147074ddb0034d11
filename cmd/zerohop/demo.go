package main

import (
	"fmt"
	"os"
)

func init() {
	register(command{name: "demo", summary: "show zerohop serving calls on this machine", run: runDemo})
}

func runDemo(args []string) int {
	// The demo needs the runtime (serve + call + quick bench); until it
	// lands, say so instead of pretending.
	fmt.Fprintln(os.Stdout, "zerohop demo: not yet — the runtime has not landed; try `zerohop probe`")
	return 0
}

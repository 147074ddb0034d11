// Command zerohop serves, probes and benchmarks zerohop.
//
//	zerohop demo     show zerohop working end to end on this machine
//	zerohop probe    report what this kernel and process allow
//	zerohop serve    serve the demo Echo service
//	zerohop call     call a method once and print the reply
//	zerohop stat     show a running server's loops, methods, drops, XDP counters and ACL rules
//	zerohop top      a live view of a running server (over its admin endpoint)
//	zerohop bench    compare zerohop with net/http, a sidecar and raw AF_XDP
package main

import (
	"fmt"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string) int
}

var commands []command

func register(c command) { commands = append(commands, c) }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: zerohop COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	if os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage()
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "zerohop: unknown command %q\n", os.Args[1])
	usage()
	os.Exit(2)
}

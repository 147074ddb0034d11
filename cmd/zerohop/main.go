// Command zerohop serves, probes and benchmarks zerohop.
//
//	zerohop demo      show zerohop working end to end on this machine
//	zerohop probe     report what this kernel and process allow
//	zerohop serve     serve the demo Echo service
//	zerohop call      call a method once and print the reply
//	zerohop ping      PING a server: serving or draining, and the round trip
//	zerohop stat      show a running server's loops, methods, drops, XDP counters and ACL rules
//	zerohop acl       list, add, delete or load a server's authorization rules and XDP ACL
//	zerohop top       a live view of a running server (over its admin endpoint)
//	zerohop services  list the services the node table and an etcd registry hold
//	zerohop bench     compare zerohop with net/http, a sidecar and raw AF_XDP
//	zerohop version   the module version and VCS revision of this binary
//
// Adding a subcommand: a file of its own whose init calls register, a run
// function that follows the convention of cli.go (newFlags/fs.parse for
// -h and flag errors, usageError for exit 2, fail for exit 1,
// signalContext for anything that runs until interrupted), and a row in
// cliRows (cli_test.go), which checks the convention for every command,
// and a line above (TestPackageDocListsEveryCommand checks there is one).
package main

import (
	"fmt"
	"io"
	"os"

	_ "github.com/zerohop/zerohop/runtime/xdp" // the AF_XDP backend
)

// command is one subcommand. run gets the arguments after the command's
// name and returns the exit status (see cli.go).
type command struct {
	name, summary string
	// hidden commands are internal (the bench harness's subprocesses):
	// they run but are not listed in the usage.
	hidden bool
	run    func(args []string) int
}

var commands []command

func register(c command) { commands = append(commands, c) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: zerohop COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\n`zerohop COMMAND -h` describes a command's flags.")
}

func main() { os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr)) }

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "zerohop: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
)

// The convention every subcommand follows:
//
//   - `zerohop CMD -h` (or --help) prints the usage to stdout and exits 0;
//   - a usage error (an unknown or malformed flag, a missing argument, a
//     value out of range) prints one line to stderr naming the flag and
//     the fix, then where to read more, and exits 2;
//   - any other failure prints one line to stderr and exits 1;
//   - a long-running command ends cleanly, removing what it made, on
//     SIGINT, SIGTERM, SIGHUP and SIGPIPE. One interrupted before its job
//     was done (bench, demo, call, ping) exits 128+signal, as a shell
//     reports a process killed by it; serve, for which a signal is the
//     normal end, exits 0 after a clean shutdown. A second signal during
//     serve's drain stops it at once (still releasing what it holds)
//     with 128+that signal.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// cmdFlags is a subcommand's flag set with its usage text.
type cmdFlags struct {
	*flag.FlagSet
	name, text string
}

// newFlags returns the flag set of subcommand name; text is the usage
// printed above the flags' defaults, starting "usage: zerohop NAME …".
func newFlags(name, text string) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parseFlags prints, to the right stream
	return &cmdFlags{FlagSet: fs, name: name, text: text}
}

// printUsage writes the usage text and the flags' defaults to w.
func (f *cmdFlags) printUsage(w io.Writer) {
	fmt.Fprintln(w, strings.TrimRight(f.text, "\n"))
	var flags strings.Builder
	f.SetOutput(&flags)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
	if flags.Len() > 0 {
		fmt.Fprint(w, "\nflags:\n", flags.String())
	}
}

// parse parses args. It returns done with the exit status when the command
// must stop here: 0 after -h (usage on stdout), 2 after a flag error.
func (f *cmdFlags) parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	err := f.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		f.printUsage(stdout)
		return exitOK, true
	default:
		return f.usageError(stderr, "%v", err), true
	}
}

// usageError reports a usage error and returns exit status 2. The message
// names the flag and the fix ("--n must be at least 1").
func (f *cmdFlags) usageError(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "zerohop %s: %s\nrun `zerohop %s -h` for the flags\n", f.name, fmt.Sprintf(format, a...), f.name)
	return exitUsage
}

// fail reports a failure and returns exit status 1. Errors of the runtime
// that name its Go options are reworded to name this command's flags.
func fail(stderr io.Writer, name string, err error, flagOf map[string]string) int {
	fmt.Fprintf(stderr, "zerohop %s: %s\n", name, withFlagNames(err.Error(), flagOf))
	return exitFailure
}

// withFlagNames replaces the runtime's option names in msg (WithInterface)
// by the flags that set them (--iface).
func withFlagNames(msg string, flagOf map[string]string) string {
	for option, flagName := range flagOf {
		msg = strings.ReplaceAll(msg, option, flagName)
	}
	return msg
}

// signals end every long-running command. SIGPIPE is among them so that a
// command whose output pipe closed (`zerohop bench | head`) cleans up
// instead of being killed mid-way; its writes then fail with EPIPE.
var signals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE}

// interrupt is a context ended by the first of signals. A second one
// (SIGINT, SIGTERM or SIGHUP) closes again, for commands whose clean end
// takes a while (serve's drain) and that stop at once when asked twice;
// the others ignore it and finish their cleanup.
type interrupt struct {
	context.Context
	stop   func()
	signal atomic.Value // os.Signal
	second atomic.Value // os.Signal
	again  chan struct{}
}

// signalContext returns a context that ends at the first of signals;
// call stop when the command is done to restore the default handling.
func signalContext(parent context.Context) *interrupt {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, signals...)
	in := &interrupt{Context: ctx, again: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			in.signal.Store(s)
			cancel()
		case <-done:
			return
		}
		// Signals keep being caught (and, after the second, dropped)
		// until stop, so that a third Ctrl-C does not kill the command
		// in the middle of its cleanup.
		for {
			select {
			case s := <-ch:
				// SIGPIPE comes from the command's own writes to a
				// closed pipe (its logs, during the drain), not from a
				// user asking twice.
				if s == syscall.SIGPIPE {
					continue
				}
				in.second.Store(s)
				close(in.again)
				return
			case <-done:
				return
			}
		}
	}()
	in.stop = func() {
		signal.Stop(ch)
		select {
		case <-done:
		default:
			close(done)
		}
		cancel()
	}
	return in
}

// received returns the signal that ended the context, or nil.
func (in *interrupt) received() os.Signal {
	s, _ := in.signal.Load().(os.Signal)
	return s
}

// repeated returns the second signal, or nil.
func (in *interrupt) repeated() os.Signal {
	s, _ := in.second.Load().(os.Signal)
	return s
}

// exitCode is the status for a command ended by a signal: 128 + its number,
// as a shell reports a process killed by it.
func (in *interrupt) exitCode() int {
	if s, ok := in.received().(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitFailure
}

// interrupted reports, on stderr, which signal ended command name and
// returns the exit status for it.
func (in *interrupt) interrupted(stderr io.Writer, name, cleaned string) int {
	msg := "zerohop " + name + ": interrupted by " + signalName(in.received())
	if cleaned != "" {
		msg += "; " + cleaned
	}
	fmt.Fprintln(stderr, msg)
	return in.exitCode()
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	case nil:
		return "cancellation"
	}
	return s.String()
}

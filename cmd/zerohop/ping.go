package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

func init() {
	register(command{name: "ping", summary: "PING a server: serving or draining, and the round-trip time", run: runPing})
}

func runPing(args []string) int { return pingCommand(context.Background(), os.Stdout, os.Stderr, args) }

const pingUsage = `usage: zerohop ping --addr IP:PORT [--count N] [--interval D] [--timeout D]

Sends --count GWIR PINGs, --interval apart, and prints each PONG: whether
the server is serving or draining (shutting down), and the round-trip
time. A PING unanswered within --timeout (retransmitted meanwhile) counts
as lost.

Exit status: 0 when every PING was answered "serving", 1 when one was lost
or answered "draining", 2 for bad flags, 128+N when interrupted by signal N.`

func pingCommand(ctx context.Context, out, errOut io.Writer, args []string) int {
	fs := newFlags("ping", pingUsage)
	addr := fs.String("addr", "", "server address IP:PORT (required)")
	count := fs.Int("count", 1, "how many PINGs to send")
	interval := fs.Duration("interval", time.Second, "time between PINGs")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for each PONG")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fs.usageError(errOut, "unexpected argument %q: give the server with --addr IP:PORT", fs.Arg(0))
	case *addr == "":
		return fs.usageError(errOut, "--addr is required: give the server's IP:PORT")
	case *count < 1:
		return fs.usageError(errOut, "--count %d: must be at least 1", *count)
	case *interval < 0:
		return fs.usageError(errOut, "--interval %v is negative: give 0 to send back to back, or e.g. 1s", *interval)
	case *timeout <= 0:
		return fs.usageError(errOut, "--timeout %v: must be positive, e.g. --timeout 2s", *timeout)
	}
	sig := signalContext(ctx)
	defer sig.stop()
	client, err := runtime.Dial("udp", *addr)
	if err != nil {
		return fail(errOut, "ping", err, nil)
	}
	defer client.Close()
	var answered, draining int
	var rttMin, rttMax, rttSum time.Duration
	for i := 0; i < *count; i++ {
		if i > 0 && *interval > 0 {
			select {
			case <-time.After(*interval):
			case <-sig.Done():
			}
		}
		if sig.Err() != nil {
			break
		}
		pingCtx, cancel := context.WithTimeout(sig, *timeout)
		start := time.Now()
		status, err := client.Ping(pingCtx)
		rtt := time.Since(start)
		cancel()
		if sig.received() != nil {
			break
		}
		if err != nil {
			fmt.Fprintf(out, "no PONG from %s within %v: %v\n", *addr, *timeout, err)
			continue
		}
		state := "serving"
		if status == proto.PongDraining {
			state = "draining"
			draining++
		} else if status != proto.PongServing {
			state = status.String()
		}
		answered++
		rttSum += rtt
		if answered == 1 || rtt < rttMin {
			rttMin = rtt
		}
		rttMax = max(rttMax, rtt)
		fmt.Fprintf(out, "PONG from %s: %s, rtt %v\n", *addr, state, rtt.Round(time.Microsecond))
	}
	sent := *count
	if sig.received() != nil {
		return sig.interrupted(errOut, "ping", "")
	}
	if *count > 1 {
		fmt.Fprintf(out, "%d sent, %d answered (%d draining)", sent, answered, draining)
		if answered > 0 {
			fmt.Fprintf(out, ", rtt min %v avg %v max %v", rttMin.Round(time.Microsecond),
				(rttSum / time.Duration(answered)).Round(time.Microsecond), rttMax.Round(time.Microsecond))
		}
		fmt.Fprintln(out)
	}
	switch {
	case answered < sent:
		return fail(errOut, "ping", fmt.Errorf("%d of %d PINGs to %s got no PONG", sent-answered, sent, *addr), nil)
	case draining > 0:
		return fail(errOut, "ping", fmt.Errorf("%s is draining (shutting down)", *addr), nil)
	}
	return exitOK
}

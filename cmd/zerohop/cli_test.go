package main

// The CLI convention (cli.go), checked for every subcommand by running the
// test binary as zerohop in a subprocess, so exit codes and the split
// between stdout and stderr are the real ones.
//
// ADDING A SUBCOMMAND: add one cliRow to cliRows below. The row's name is
// enough for the generic checks (-h and --help exit 0 with the usage on
// stdout and nothing on stderr; the command is listed by `zerohop -h`
// unless hidden). Then list, as cliCases:
//   - usage: argument lists that must exit 2, with want a substring of
//     stderr naming the flag or the fix (e.g. "--count");
//   - fail:  argument lists that must exit 1, with want in stderr;
//   - ok:    argument lists that must exit 0, with want in stdout.
// Cases must finish in a few seconds, need no root, and send traffic only
// to loopback (127.0.0.1:9, the discard port, answers nothing).
// TestEveryCommandHasARow fails until the new command has its row.

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

type cliCase struct {
	args []string
	want string
	// notWant must not appear in stderr (e.g. a Go option name).
	notWant string
}

type cliRow struct {
	cmd             string
	usage, fail, ok []cliCase
}

var cliRows = []cliRow{
	{cmd: "acl",
		usage: []cliCase{
			{args: nil, want: "give a verb"},
			{args: []string{"list", "--admin", "127.0.0.1:9", "--iface", "lo"}, want: "exclude each other"},
			{args: []string{"list", "--admin", "nonsense"}, want: "--admin \"nonsense\""},
			{args: []string{"nope", "--iface", "lo"}, want: "unknown verb"},
			{args: []string{"add", "--iface", "lo", "--port", "70000"}, want: "--port"},
			{args: []string{"load", "--admin", "127.0.0.1:9"}, want: "policy file"},
		},
		fail: []cliCase{
			{args: []string{"list", "--iface", "zhnosuchif0"}, want: "zhnosuchif0"},
		}},
	{cmd: "serve",
		usage: []cliCase{
			{args: nil, want: "--addr is required"},
			{args: []string{"--addr", "127.0.0.1:0", "--backend", "nope"}, want: "--backend"},
			{args: []string{"--addr", "127.0.0.1:0", "--busy-poll", "-1ms"}, want: "--busy-poll"},
			{args: []string{"--addr", "127.0.0.1:0", "--queues", "x"}, want: "--queues"},
			{args: []string{"--addr", "127.0.0.1:0", "--bogus"}, want: "-bogus"},
			{args: []string{"--addr", "127.0.0.1:0", "--admin", "nonsense"}, want: "--admin"},
			{args: []string{"--addr", "127.0.0.1:0", "--trace-ratio", "0.5"}, want: "--trace-ratio needs --otlp"},
			{args: []string{"--addr", "127.0.0.1:0", "--otlp", "http://127.0.0.1:9/v1/traces", "--trace-ratio", "2"}, want: "--trace-ratio 2"},
			{args: []string{"--addr", "127.0.0.1:0", "--otlp", "127.0.0.1:4318"}, want: "--otlp"},
			{args: []string{"--addr", "127.0.0.1:0", "--require-sealed"}, want: "--require-sealed needs --identity DIR"},
			{args: []string{"--addr", "127.0.0.1:0", "--allow", "spiffe://td/*"}, want: "--allow needs --identity DIR"},
			{args: []string{"--addr", "127.0.0.1:0", "--identity", "/nonexistent", "--allow", "spiffe://td/a/**/b"}, want: "--allow"},
			{args: []string{"--addr", "127.0.0.1:0", "--identity", "/nonexistent", "--tcp"}, want: "--handshake-port"},
			{args: []string{"--addr", "127.0.0.1:0", "--identity", "/nonexistent", "--handshake-port", "70000"}, want: "--handshake-port 70000"},
			{args: []string{"--addr", "127.0.0.1:7000", "--service", "zerohop.Echo"}, want: "--etcd ENDPOINTS or --node-table"},
			{args: []string{"--addr", "127.0.0.1:7000", "--etcd", "http://127.0.0.1:9"}, want: "--service is required"},
			{args: []string{"--addr", "0.0.0.0:7000", "--node-table", "--service", "zerohop.Echo"}, want: "--advertise"},
			{args: []string{"--addr", "127.0.0.1:7000", "--node-table", "--service", "a/b"}, want: "--service"},
			{args: []string{"--addr", "127.0.0.1:7000", "--drain-delay", "-1s"}, want: "--drain-delay"},
		},
		fail: []cliCase{
			// TEST-NET-1: not an address of this machine, so bind fails.
			{args: []string{"--addr", "192.0.2.1:7000", "--backend", "uring"}, want: "cannot assign requested address"},
			{args: []string{"--addr", "127.0.0.1:0", "--backend", "uring", "--identity", "/nonexistent/id"}, want: "--identity"},
			{args: []string{"--addr", "0.0.0.0:7000", "--backend", "xsk"}, want: "--iface", notWant: "WithInterface"},
			// The server starts; its --admin listener cannot bind, so it stops.
			{args: []string{"--addr", "127.0.0.1:0", "--backend", "uring", "--admin", "192.0.2.1:9"}, want: "192.0.2.1:9"},
		}},
	{cmd: "call",
		usage: []cliCase{
			{args: []string{"zerohop.Echo/Echo"}, want: "--addr is required"},
			{args: []string{"--addr", "127.0.0.1:9"}, want: "METHOD"},
			{args: []string{"--addr", "127.0.0.1:9", "--field", "6=3.14", "m"}, want: "6:double=3.14"},
			{args: []string{"--addr", "127.0.0.1:9", "--field", "6:int32=1e3", "m"}, want: "not a valid int32"},
			{args: []string{"--addr", "127.0.0.1:9", "--timeout", "-1s", "m"}, want: "--timeout"},
			{args: []string{"--addr", "127.0.0.1:9", "--handshake-port", "7001", "m"}, want: "--handshake-port needs --identity DIR"},
			{args: []string{"--service", "zerohop.Echo", "m"}, want: "exactly one of --etcd"},
			{args: []string{"--etcd", "http://127.0.0.1:9", "m"}, want: "give --service"},
			{args: []string{"--addr", "127.0.0.1:9", "--service", "zerohop.Echo", "--endpoints", "127.0.0.1:9", "m"}, want: "exclude"},
			{args: []string{"--service", "zerohop.Echo", "--endpoints", "nope", "m"}, want: "--endpoints"},
		},
		fail: []cliCase{
			{args: []string{"--addr", "127.0.0.1:9", "--timeout", "300ms", "zerohop.Echo/Echo"}, want: "zerohop call: "},
			{args: []string{"--addr", "127.0.0.1:9", "--identity", "/nonexistent/id", "zerohop.Echo/Echo"}, want: "--identity"},
			{args: []string{"--service", "zerohop.Echo", "--endpoints", "127.0.0.1:9", "--timeout", "300ms", "zerohop.Echo/Echo"}, want: "zerohop call: "},
		}},
	{cmd: "services",
		usage: []cliCase{
			{args: []string{"extra"}, want: `"extra"`},
			{args: []string{"--timeout", "0s"}, want: "--timeout"},
			{args: []string{"--no-node-table"}, want: "nothing to list"},
		},
		fail: []cliCase{
			{args: []string{"--no-node-table", "--etcd", "http://127.0.0.1:9", "--timeout", "300ms"}, want: "--etcd http://127.0.0.1:9"},
		}},
	{cmd: "ping",
		usage: []cliCase{
			{args: nil, want: "--addr is required"},
			{args: []string{"--addr", "127.0.0.1:9", "--count", "0"}, want: "--count"},
			{args: []string{"--addr", "127.0.0.1:9", "--interval", "-1s"}, want: "--interval"},
			{args: []string{"--addr", "127.0.0.1:9", "--timeout", "0s"}, want: "--timeout"},
		},
		fail: []cliCase{
			{args: []string{"--addr", "127.0.0.1:9", "--timeout", "300ms"}, want: "got no PONG"},
		}},
	{cmd: "probe",
		usage: []cliCase{
			{args: []string{"--queue", "-1"}, want: "--queue"},
			{args: []string{"extra"}, want: `"extra"`},
		},
		fail: []cliCase{
			{args: []string{"--iface", "zh-no-such0"}, want: "--iface zh-no-such0: no such interface"},
		}},
	// stat and top without --admin look for the only admin socket of this
	// network namespace, which other tests' servers may hold: the cases
	// name an endpoint.
	{cmd: "stat",
		usage: []cliCase{
			{args: []string{"extra"}, want: `"extra"`},
			{args: []string{"--iface", "a", "--dir", "b"}, want: "exactly one"},
			{args: []string{"--admin", "127.0.0.1:9", "--dir", "b"}, want: "exactly one"},
			{args: []string{"--admin", "nonsense"}, want: "--admin"},
		},
		fail: []cliCase{
			{args: []string{"--dir", "/nonexistent/zerohop"}, want: "--pin-maps"},
			{args: []string{"--admin", "127.0.0.1:9"}, want: "admin endpoint 127.0.0.1:9"},
			{args: []string{"--admin", "unix:@zerohop-cli-test/nobody"}, want: "admin endpoint unix:@zerohop-cli-test/nobody"},
		}},
	{cmd: "top",
		usage: []cliCase{
			{args: []string{"extra"}, want: `"extra"`},
			{args: []string{"--interval", "0s"}, want: "--interval"},
			{args: []string{"--interval", "-1s"}, want: "--interval"},
			{args: []string{"--admin", "nonsense"}, want: "--admin"},
			{args: []string{"--bogus"}, want: "-bogus"},
		},
		fail: []cliCase{
			{args: []string{"--admin", "127.0.0.1:9", "--once"}, want: "admin endpoint 127.0.0.1:9"},
			{args: []string{"--admin", "unix:@zerohop-cli-test/nobody"}, want: "admin endpoint unix:@zerohop-cli-test/nobody"},
		}},
	{cmd: "bench",
		usage: []cliCase{
			{args: []string{"--n", "0"}, want: "--n"},
			{args: []string{"--n", "1,x"}, want: "--n"},
			{args: []string{"--duration", "-1s"}, want: "--duration"},
			{args: []string{"--duration", "0s"}, want: "--duration"},
			{args: []string{"--warmup", "-1s"}, want: "--warmup"},
			{args: []string{"--payload", "100000"}, want: "--payload"},
			{args: []string{"--queues", "0"}, want: "--queues"},
			{args: []string{"--variants", "nope"}, want: "--variants"},
		},
		fail: []cliCase{
			{args: []string{"--from", "/nonexistent/bench.json"}, want: "zerohop bench: "},
		}},
	{cmd: "demo",
		usage: []cliCase{
			{args: []string{"extra"}, want: `"extra"`},
			{args: []string{"--bogus"}, want: "-bogus"},
		}},
	{cmd: "version",
		usage: []cliCase{{args: []string{"extra"}, want: `"extra"`}},
		ok:    []cliCase{{args: nil, want: "github.com/zerohop/zerohop"}, {args: []string{"--json"}, want: `"module"`}}},
	{cmd: "bench-server", usage: []cliCase{{args: []string{"--kind", "nope"}, want: "--kind"}}},
	{cmd: "bench-client", usage: []cliCase{{args: []string{"--n", "0"}, want: "--n"}}},
}

// runZerohop runs the test binary as `zerohop args…`.
func runZerohop(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

func TestCLIConvention(t *testing.T) {
	for _, row := range cliRows {
		t.Run(row.cmd, func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				code, out, errOut := runZerohop(t, row.cmd, h)
				if code != exitOK || !strings.HasPrefix(out, "usage: zerohop "+row.cmd) || errOut != "" {
					t.Errorf("%s %s: exit %d, stdout %.60q, stderr %q; want 0, the usage on stdout, nothing on stderr", row.cmd, h, code, out, errOut)
				}
			}
			check := func(c cliCase, wantCode int, where string) {
				code, out, errOut := runZerohop(t, append([]string{row.cmd}, c.args...)...)
				text := errOut
				if where == "stdout" {
					text = out
				}
				if code != wantCode || !strings.Contains(text, c.want) || (c.notWant != "" && strings.Contains(errOut, c.notWant)) {
					t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want exit %d and %q in %s", row.cmd, c.args, code, out, errOut, wantCode, c.want, where)
				}
				if wantCode == exitUsage && (out != "" || !strings.Contains(errOut, "zerohop "+row.cmd+" -h")) {
					t.Errorf("%s %q: a usage error writes only to stderr and says where the flags are described; stdout %q, stderr %q", row.cmd, c.args, out, errOut)
				}
				if wantCode == exitFailure && !strings.HasPrefix(errOut, "zerohop "+row.cmd+": ") && !strings.Contains(errOut, "\nzerohop "+row.cmd+": ") {
					t.Errorf("%s %q: a failure names the command on stderr; stderr %q", row.cmd, c.args, errOut)
				}
			}
			for _, c := range row.usage {
				check(c, exitUsage, "stderr")
			}
			for _, c := range row.fail {
				check(c, exitFailure, "stderr")
			}
			for _, c := range row.ok {
				check(c, exitOK, "stdout")
			}
		})
	}
}

func TestEveryCommandHasARow(t *testing.T) {
	rows := map[string]bool{}
	for _, r := range cliRows {
		rows[r.cmd] = true
	}
	for _, c := range commands {
		if !rows[c.name] {
			t.Errorf("command %q has no row in cliRows (cli_test.go): add one", c.name)
		}
	}
}

func TestTopLevelUsage(t *testing.T) {
	code, out, errOut := runZerohop(t, "-h")
	if code != exitOK || errOut != "" {
		t.Fatalf("zerohop -h: exit %d, stderr %q", code, errOut)
	}
	for _, c := range commands {
		listed := strings.Contains(out, "\n  "+c.name+" ")
		if listed == c.hidden {
			t.Errorf("zerohop -h lists %s: %v; hidden: %v\n%s", c.name, listed, c.hidden, out)
		}
	}
	for _, args := range [][]string{nil, {"frobnicate"}} {
		if code, out, errOut := runZerohop(t, args...); code != exitUsage || out != "" || !strings.Contains(errOut, "usage: zerohop") {
			t.Errorf("zerohop %q: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", args, code, out, errOut)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// startCallServer answers "t.S/Echo" with the request payload and
// everything else with status APP(16) and a message; it never answers
// "t.S/Silent".
func startCallServer(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		in, out := make([]byte, 65536), make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(in)
			if err != nil {
				return
			}
			f, err := proto.Parse(in[:n])
			if err != nil || f.Kind() != proto.KindRequest {
				continue
			}
			var r proto.Frame
			switch f.MethodID() {
			case proto.MethodID("t.S/Echo"):
				r, err = proto.EncodeResponse(out, f.RequestID(), f.MethodID(), proto.StatusOK, f.Payload())
			case proto.MethodID("t.S/Silent"):
				continue
			default:
				r, err = proto.EncodeError(out, f.RequestID(), f.MethodID(), proto.StatusApplication, "not here")
			}
			if err == nil {
				conn.WriteToUDPAddrPort(r, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return conn.LocalAddr().String()
}

func runCallCmd(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := callCommand(context.Background(), &out, &errOut, args)
	return code, out.String(), errOut.String()
}

func TestCallCommand(t *testing.T) {
	addr := startCallServer(t)

	code, out, errOut := runCallCmd("--addr", addr, "t.S/Echo",
		"--field", "1=42", "--field", "2:string=hello", "--field", "3:bytes=00ff",
		"--field", "4=-1", "--field", "5:fixed32=7", "--field", "6:sfixed64=-2", "--field", "7:string=12",
		"--field", "8:double=3.14", "--field", "9:float=-0.5", "--field", "10:sint32=-3", "--field", "11:bool=true",
		"--field", "12:int32=-1", "--field", "13:uint64=0x10", "--field", "14:enum=2")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	want := `status OK
field 1 varint 42
field 2 bytes "hello"
field 3 bytes 00ff
field 4 varint 18446744073709551615 (int64 -1)
field 5 fixed32 7 (float 1e-44)
field 6 fixed64 18446744073709551614 (double NaN)
field 7 bytes "12"
field 8 fixed64 4614253070214989087 (double 3.14)
field 9 fixed32 3204448256 (float -0.5)
field 10 varint 5
field 11 varint 1
field 12 varint 18446744073709551615 (int64 -1)
field 13 varint 16
field 14 varint 2
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	// Raw hex payload, flags after METHOD.
	code, out, _ = runCallCmd("t.S/Echo", "--addr", addr, "--hex", "08011203616263")
	if code != 0 || out != "status OK\nfield 1 varint 1\nfield 2 bytes \"abc\"\n" {
		t.Errorf("--hex: exit %d, output:\n%s", code, out)
	}

	// A non-OK status: printed with its message, exit 1.
	code, out, _ = runCallCmd("--addr", addr, "t.S/Other")
	if code != 1 || !strings.HasPrefix(out, "status APP(16): not here\n") || !strings.Contains(out, `field 1 bytes "not here"`) {
		t.Errorf("error status: exit %d, output:\n%s", code, out)
	}

	// No reply within the timeout: exit 1 with the error.
	code, _, errOut = runCallCmd("--addr", addr, "--timeout", "50ms", "t.S/Silent")
	if code != 1 || !strings.Contains(errOut, "deadline exceeded") {
		t.Errorf("silent: exit %d, stderr %q", code, errOut)
	}
}

func TestCallCommandBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"t.S/Echo"},                              // no --addr
		{"--addr", "127.0.0.1:9"},                 // no METHOD
		{"--addr", "127.0.0.1:9", "a", "b"},       // two METHODs
		{"--addr", "127.0.0.1:9", "--bogus", "a"}, // unknown flag
		{"--addr", "127.0.0.1:9", "--hex", "zz", "a"},
		{"--addr", "127.0.0.1:9", "--hex", "00", "--field", "1=1", "a"},
		{"--addr", "127.0.0.1:9", "--field", "0=1", "a"},
		{"--addr", "127.0.0.1:9", "--field", "19000=1", "a"},
		{"--addr", "127.0.0.1:9", "--field", "x", "a"},
		{"--addr", "127.0.0.1:9", "--field", "1:fixed32=99999999999", "a"},
		{"--addr", "127.0.0.1:9", "--field", "6=3.14", "a"},     // untyped non-integer: refused
		{"--addr", "127.0.0.1:9", "--field", "6=hello", "a"},    // untyped text: refused
		{"--addr", "127.0.0.1:9", "--field", "6:double=x", "a"}, // not a double
		{"--addr", "127.0.0.1:9", "--field", "6:int32=3000000000", "a"},
		{"--addr", "127.0.0.1:9", "--field", "6:uint32=-1", "a"},
		{"--addr", "127.0.0.1:9", "--field", "6:bool=maybe", "a"},
		{"--addr", "127.0.0.1:9", "--field", "6:bytes=xyz", "a"},
		{"--addr", "127.0.0.1:9", "--field", "6:decimal=1", "a"}, // no such type
		{"--addr", "127.0.0.1:9", "--field", "6:string=\xff", "a"},
		{"--addr", "127.0.0.1:9", "--timeout", "0s", "a"},
	} {
		if code, _, _ := runCallCmd(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	// A bad address is not a flag error but a failed call.
	if code, _, _ := runCallCmd("--addr", "nowhere", "a"); code != 1 {
		t.Errorf("bad address: exit %d, want 1", code)
	}
}

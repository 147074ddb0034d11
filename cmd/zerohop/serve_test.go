package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

func TestServeAnswersEchoAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	started := make(chan *runtime.Server, 1)
	exit := make(chan int, 1)
	go func() {
		exit <- serve(ctx, &logs, &logs, []string{"--addr", "127.0.0.1:0", "--backend", "uring", "--queues", "0,1"}, started)
	}()
	var srv *runtime.Server
	select {
	case srv = <-started:
	case code := <-exit:
		t.Fatalf("serve exited %d: %s", code, logs.String())
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := proto.EncodeRequest(make([]byte, 64), 9, proto.MethodID(echo.EchoMethod), 0, []byte("\x08\x07"))
	buf := make([]byte, 1500)
	var reply proto.Frame
	for attempt := 0; attempt < 10 && reply == nil; attempt++ {
		conn.Write(req)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			reply, _ = proto.Parse(buf[:n])
		}
	}
	if reply == nil || reply.RequestID() != 9 || !bytes.Equal(reply.Payload(), []byte("\x08\x07")) {
		t.Fatalf("echo reply % x", reply)
	}
	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("serve exited %d: %s", code, logs.String())
	}
	for _, want := range []string{"backend=uring", "loops=\"loop0→cpu0 loop1→cpu1\"", "shutting down", "requests=1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"--addr", "127.0.0.1:0", "--backend", "nope"}, {"--addr", "127.0.0.1:0", "--queues", "a"},
		{"--addr", "127.0.0.1:0", "--queues", "-1"}, {"--addr", "127.0.0.1:0", "--busy-poll", "-1ms"},
		{"--addr", "127.0.0.1:0", "--stats", "-1s"}, {"--addr", "127.0.0.1:0", "--queues", "0,1", "--cores", "0"}, {"--addr", "127.0.0.1:0", "extra"}} {
		var logs bytes.Buffer
		if code := serve(context.Background(), &logs, &logs, args, nil); code != 2 {
			t.Errorf("serve %q exited %d, want 2", args, code)
		}
	}
}

// Errors name the flag to fix: a --iface that does not exist is an error
// (never a quiet fallback to another path), and the runtime's option names
// in Listen's errors come out as flags.
func TestServeErrorsNameFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--addr", "127.0.0.1:7000", "--iface", "zhnosuch0"}, 2, []string{"--iface zhnosuch0", "no such interface"}},
		{[]string{"--addr", "127.0.0.1:7000", "--cores", "0"}, 2, []string{"--cores lists 1 cores for 0 queues", "--queues"}},
		{[]string{"--addr", "127.0.0.1:7000", "--backend", "xsk"}, 1, []string{"--backend", "loopback"}},
	} {
		var logs bytes.Buffer
		code := serve(context.Background(), &logs, &logs, tc.args, nil)
		if code != tc.code {
			t.Errorf("serve %q exited %d, want %d:\n%s", tc.args, code, tc.code, logs.String())
		}
		for _, want := range tc.want {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("serve %q: output lacks %q:\n%s", tc.args, want, logs.String())
			}
		}
	}
}

// Two servers on one address: the second fails "address in use" and says
// how to share it; with --reuse-port on both, both serve.
func TestServeAddressInUse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *runtime.Server, 1)
	exit := make(chan int, 1)
	var firstLogs syncBuffer
	go func() {
		exit <- serve(ctx, &firstLogs, &firstLogs, []string{"--addr", "127.0.0.1:0", "--backend", "uring"}, started)
	}()
	var first *runtime.Server
	select {
	case first = <-started:
	case code := <-exit:
		t.Fatalf("serve exited %d: %s", code, firstLogs.String())
	}
	var logs bytes.Buffer
	if code := serve(ctx, &logs, &logs, []string{"--addr", first.Addr().String(), "--backend", "uring"}, nil); code != 1 ||
		!strings.Contains(logs.String(), "address in use") || !strings.Contains(logs.String(), "--reuse-port") {
		t.Fatalf("second serve on %s exited %d:\n%s", first.Addr(), code, logs.String())
	}
	cancel()
	<-exit
}

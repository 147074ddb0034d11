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

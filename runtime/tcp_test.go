package runtime_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
	"golang.org/x/sys/unix"
)

func readFrame(t *testing.T, r *bufio.Reader) proto.Frame {
	t.Helper()
	head := make([]byte, proto.HeaderLen)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatalf("reading a reply header: %v", err)
	}
	f := append(head, make([]byte, proto.Frame(head).PayloadLen())...)
	if _, err := io.ReadFull(r, f[proto.HeaderLen:]); err != nil {
		t.Fatalf("reading a reply payload: %v", err)
	}
	pf, err := proto.Parse(f)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return pf
}

func dialTCP(t *testing.T, srv *runtime.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn, bufio.NewReader(conn)
}

func TestUringBackendTCPStream(t *testing.T) {
	srv, gate := testServer(t, "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring), runtime.WithTCP())

	t.Run("pipelined frames across arbitrary writes", func(t *testing.T) {
		conn, r := dialTCP(t, srv)
		const calls = 2000
		var stream []byte
		for i := 0; i < calls; i++ {
			payload := bytes.Repeat([]byte{byte(i)}, i%300)
			f, _ := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), uint64(i), proto.MethodID(echo.EchoMethod), 0, payload)
			stream = append(stream, f...)
		}
		go func() {
			rng := rand.New(rand.NewSource(2))
			for len(stream) > 0 {
				n := 1 + rng.Intn(700)
				if n > len(stream) {
					n = len(stream)
				}
				if _, err := conn.Write(stream[:n]); err != nil {
					return
				}
				stream = stream[n:]
			}
		}()
		for i := 0; i < calls; i++ {
			f := readFrame(t, r)
			if f.RequestID() != uint64(i) || !bytes.Equal(f.Payload(), bytes.Repeat([]byte{byte(i)}, i%300)) {
				t.Fatalf("reply %d: id %d, %d payload bytes", i, f.RequestID(), len(f.Payload()))
			}
		}
	})

	t.Run("blocking handler keeps reply order", func(t *testing.T) {
		conn, r := dialTCP(t, srv)
		slow, _ := proto.EncodeRequest(make([]byte, 64), 1, proto.MethodID(blockingMethod), 0, []byte("\x08\x01"))
		fast, _ := proto.EncodeRequest(make([]byte, 64), 2, proto.MethodID(echo.EchoMethod), 0, []byte("\x08\x02"))
		conn.Write(append(append([]byte(nil), slow...), fast...))
		for i := 0; i < 2000 && gate.entered.Load() == 0; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		if gate.entered.Load() == 0 {
			t.Fatal("blocking handler never ran")
		}
		gate.open()
		if a, b := readFrame(t, r), readFrame(t, r); a.RequestID() != 1 || b.RequestID() != 2 {
			t.Fatalf("replies in order %d, %d; want 1, 2", a.RequestID(), b.RequestID())
		}
	})

	t.Run("bad frame answered, lost sync closes", func(t *testing.T) {
		conn, r := dialTCP(t, srv)
		bad, _ := proto.EncodeRequest(make([]byte, 64), 3, proto.MethodID(echo.EchoMethod), 0, nil)
		bad[22] = 0x80 // reserved flag: BAD_FRAME, the stream goes on
		conn.Write(bad)
		if f := readFrame(t, r); f.Status() != proto.StatusBadFrame || f.RequestID() != 3 {
			t.Fatalf("reply status %v id %d", f.Status(), f.RequestID())
		}
		conn.Write([]byte("HTTP/1.1 GET / lost sync garbage......."))
		if n, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after garbage: read %d, %v; want EOF", n, err)
		}
	})

	t.Run("oversized frame answered TOO_LARGE before the close", func(t *testing.T) {
		conn, r := dialTCP(t, srv)
		big, _ := proto.EncodeRequest(make([]byte, 24+10000), 5, proto.MethodID(echo.EchoMethod), 0, make([]byte, 10000))
		conn.Write(big)
		if f := readFrame(t, r); f.Status() != proto.StatusTooLarge || f.RequestID() != 5 {
			t.Fatalf("reply status %v id %d", f.Status(), f.RequestID())
		}
		if n, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after TOO_LARGE: read %d, %v; want EOF", n, err)
		}
	})

	t.Run("half-closed peer still gets every reply", func(t *testing.T) {
		conn, r := dialTCP(t, srv)
		gate.reset()
		var stream []byte
		for i := 0; i < 50; i++ {
			f, _ := proto.EncodeRequest(make([]byte, 64), uint64(100+i), proto.MethodID(echo.EchoMethod), 0, []byte{8, byte(i)})
			stream = append(stream, f...)
		}
		slow, _ := proto.EncodeRequest(make([]byte, 64), 150, proto.MethodID(blockingMethod), 0, []byte{8, 50})
		stream = append(stream, slow...)
		conn.Write(stream)
		conn.(*net.TCPConn).CloseWrite() // FIN while the blocking call is held
		for i := 0; i < 2000 && gate.entered.Load() == 0; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		gate.open()
		for i := 0; i < 51; i++ {
			if f := readFrame(t, r); f.RequestID() != uint64(100+i) || f.Status() != proto.StatusOK {
				t.Fatalf("reply %d: id %d status %v", i, f.RequestID(), f.Status())
			}
		}
		if n, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the last reply: read %d, %v; want EOF", n, err)
		}
	})

	t.Run("UDP still served", func(t *testing.T) {
		c := dialKernel(t, srv.Addr())
		if f := c.call(9, echo.EchoMethod, []byte("\x08\x09")); !bytes.Equal(f.Payload(), []byte("\x08\x09")) {
			t.Fatalf("udp echo % x", f.Payload())
		}
	})
}

// A Listen that fails half way (the TCP port is taken while UDP is free)
// releases what it opened and nothing else — it once closed fd 0.
func TestListenFailureClosesOnlyItsOwn(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = runtime.Listen("udp", held.Addr().String(), runtime.WithBackend(runtime.BackendUring), runtime.WithTCP())
	if err == nil || !strings.Contains(err.Error(), "tcp") || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("Listen with TCP on a taken TCP port: %v", err)
	}
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Fatalf("fd 0 after the failed Listen: %v", err)
	}
	// A server that serves only UDP does not care who holds the TCP port.
	srv, err := runtime.Listen("udp", held.Addr().String(), runtime.WithBackend(runtime.BackendUring))
	if err != nil {
		t.Fatalf("UDP-only Listen beside a taken TCP port: %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

package uring

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

// uringEcho is a UDP echo server the way the fallback backend will serve:
// one event-loop ring on a locked thread, a multishot RECVMSG into a
// provided-buffer ring, and a SENDMSG straight out of the received buffer,
// which is recycled when the send completes.
type uringEcho struct {
	addr netip.AddrPort
	stop atomic.Bool
	done chan error
}

const (
	echoBuffers   = 256
	echoBufSize   = 2048
	echoRecvTag   = 1 << 32
	echoSendTag   = 2 << 32
	echoTagMask   = 0xffff << 32
	echoNameSpace = unix.SizeofSockaddrInet6
)

type echoSend struct {
	msg unix.Msghdr
	iov unix.Iovec
}

func startUringEcho(tb testing.TB) *uringEcho {
	tb.Helper()
	s := &uringEcho{done: make(chan error, 1)}
	ready := make(chan error, 1)
	go s.run(ready)
	if err := <-ready; err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.stop.Store(true)
		if err := <-s.done; err != nil {
			tb.Error(err)
		}
	})
	return s
}

func (s *uringEcho) run(ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := s.serve(ready)
	if err != nil {
		select {
		case ready <- err:
		default:
		}
	}
	s.done <- err
}

func (s *uringEcho) serve(ready chan<- error) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	leak.Track(fd)
	defer func() { leak.Untrack(fd); unix.Close(fd) }()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	in4 := sa.(*unix.SockaddrInet4)
	s.addr = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))

	r, err := New(256, WithDeferTaskrun(), WithCoopTaskrun())
	if err != nil {
		return err
	}
	defer r.Close()
	br, err := r.NewBufferRing(0, echoBuffers, echoBufSize)
	if err != nil {
		return err
	}
	recvMsg := &unix.Msghdr{Namelen: echoNameSpace}
	sends := make([]echoSend, echoBuffers)
	if _, err := r.PrepRecvmsgMultishot(fd, recvMsg, br.Group(), 0, echoRecvTag); err != nil {
		return err
	}
	ready <- nil
	var cqes [64]CQE
	for !s.stop.Load() {
		// Submit the sends prepared last pass and sleep for the next
		// completion in one io_uring_enter.
		if _, err := r.SubmitAndWait(1, 20*time.Millisecond); err != nil {
			return err
		}
		for {
			n := r.Reap(cqes[:])
			for i := range cqes[:n] {
				c := &cqes[i]
				switch c.UserData & echoTagMask {
				case echoRecvTag:
					if id, ok := c.BufferID(); ok {
						if err := s.echo(r, fd, br, sends, id, c.Res); err != nil {
							return err
						}
					}
					if !c.More() {
						if c.Res < 0 && !c.NoBuffers() {
							return fmt.Errorf("multishot recvmsg ended: %w", c.Err())
						}
						if _, err := r.PrepRecvmsgMultishot(fd, recvMsg, br.Group(), 0, echoRecvTag); err != nil {
							return err
						}
					}
				case echoSendTag:
					if err := c.Err(); err != nil {
						return fmt.Errorf("sendmsg: %w", err)
					}
					br.Put(uint16(c.UserData))
				}
			}
			br.Publish()
			if n < len(cqes) {
				break
			}
		}
	}
	return nil
}

// echo sends the datagram in buffer id back to where it came from, out of
// the buffer itself.
func (s *uringEcho) echo(r *Ring, fd int, br *BufferRing, sends []echoSend, id uint16, res int32) error {
	out, err := ParseRecvmsgOut(br.Buffer(id)[:res], echoNameSpace, 0)
	if err != nil || len(out.Payload) == 0 || len(out.Name) == 0 {
		br.Put(id)
		return nil
	}
	snd := &sends[id]
	snd.iov.Base = &out.Payload[0]
	snd.iov.SetLen(len(out.Payload))
	snd.msg = unix.Msghdr{Name: &out.Name[0], Namelen: uint32(len(out.Name)), Iov: &snd.iov, Iovlen: 1}
	_, err = r.PrepSendmsg(fd, &snd.msg, 0, echoSendTag|uint64(id))
	return err
}

// goEcho is the reference: a plain Go net.UDPConn echo server.
func startGoEcho(tb testing.TB) netip.AddrPort {
	tb.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, echoBufSize)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	tb.Cleanup(func() { conn.Close(); <-done })
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// echoClient does one round trip at a time from one kernel UDP socket.
type echoClient struct {
	conn    *net.UDPConn
	payload []byte
	reply   []byte
}

func newEchoClient(tb testing.TB) *echoClient {
	tb.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	payload := make([]byte, 64)
	for i := range payload {
		payload[i] = byte(i)
	}
	return &echoClient{conn: conn, payload: payload, reply: make([]byte, echoBufSize)}
}

func (c *echoClient) roundTrip(to netip.AddrPort) error {
	if _, err := c.conn.WriteToUDPAddrPort(c.payload, to); err != nil {
		return err
	}
	n, from, err := c.conn.ReadFromUDPAddrPort(c.reply)
	if err != nil {
		return err
	}
	if from != to || n != len(c.payload) || c.reply[0] != c.payload[0] || c.reply[n-1] != c.payload[n-1] {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestUringEchoServer(t *testing.T) {
	srv := startUringEcho(t)
	cli := newEchoClient(t)
	cli.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	// More round trips than buffers: buffers are recycled after each send.
	for i := range 3 * echoBuffers {
		cli.payload[0] = byte(i)
		if err := cli.roundTrip(srv.addr); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
	}
}

func BenchmarkNopBatch32(b *testing.B) {
	r := loopRing(b, 64)
	var cqes [32]CQE
	b.ReportAllocs()
	for b.Loop() {
		for i := range 32 {
			if _, err := r.PrepNop(uint64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := r.SubmitAndWait(32, 0); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < 32; {
			got += r.Reap(cqes[got:])
			if got < 32 {
				if _, err := r.SubmitAndWait(uint32(32-got), 0); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkUDPEcho: one kernel UDP client, one outstanding datagram, against
// the io_uring echo server and a Go net.UDPConn echo server in the same run.
// Compare the two (medians of -count 5), not absolute times.
func BenchmarkUDPEcho(b *testing.B) {
	cli := newEchoClient(b)
	servers := []struct {
		name string
		addr netip.AddrPort
	}{
		{"uring", startUringEcho(b).addr},
		{"netudp", startGoEcho(b)},
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			cli.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
			b.ReportAllocs()
			for b.Loop() {
				if err := cli.roundTrip(srv.addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadBatch32 is the reap path with memory tracked: 32 READs, each
// holding its buffer until its CQE, recorded at submission and retired by
// Reap. 0 allocs/op.
func BenchmarkReadBatch32(b *testing.B) {
	r := loopRing(b, 64)
	rfd, wfd := pipe(b)
	bufs := make([][8]byte, 32)
	fill := make([]byte, 32*8)
	var cqes [32]CQE
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unix.Write(wfd, fill); err != nil {
			b.Fatal(err)
		}
		for i := range bufs {
			if _, err := r.PrepRead(rfd, bufs[i][:], ^uint64(0), uint64(i)); err != nil {
				b.Fatal(err)
			}
		}
		for got := 0; got < 32; {
			if _, err := r.SubmitAndWait(uint32(32-got), 0); err != nil {
				b.Fatal(err)
			}
			got += r.Reap(cqes[got:])
		}
	}
	if r.inflight.live != 0 {
		b.Fatalf("%d reads still tracked", r.inflight.live)
	}
}

// BenchmarkMultishotRecvmsg is the fallback backend's receive path: one
// multishot RECVMSG on a buffer ring, one datagram per iteration, the
// buffer recycled after each CQE. 0 allocs/op.
func BenchmarkMultishotRecvmsg(b *testing.B) {
	r := loopRing(b, 16)
	br, err := r.NewBufferRing(1, 64, 256)
	if err != nil {
		b.Fatal(err)
	}
	srv, srvAddr := udpSocket(b)
	cli, _ := udpSocket(b)
	if err := unix.Connect(cli, sockaddr4(srvAddr)); err != nil {
		b.Fatal(err)
	}
	msg := &unix.Msghdr{Namelen: unix.SizeofSockaddrInet6}
	if _, err := r.PrepRecvmsgMultishot(srv, msg, br.Group(), 0, 1); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	var cqes [8]CQE
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unix.Write(cli, payload); err != nil {
			b.Fatal(err)
		}
		n := 0
		for n == 0 {
			if _, err := r.SubmitAndWait(1, 0); err != nil {
				b.Fatal(err)
			}
			n = r.Reap(cqes[:])
		}
		for _, c := range cqes[:n] {
			id, ok := c.BufferID()
			if !ok || !c.More() {
				b.Fatalf("CQE %+v: multishot ended", c)
			}
			br.Put(id)
		}
		br.Publish()
	}
}

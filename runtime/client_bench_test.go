package runtime

import (
	"context"
	"net"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// BenchmarkClientCall measures round trips against the net.UDPConn GWIR
// server on loopback, one outstanding call (seq) and 64 (pipelined), with
// the loop sleeping in the ring and with busy polling. The kernel-socket
// baseline does the sequential round trip with a plain net.UDPConn, so
// ratios can be read within one run.
func BenchmarkClientCall(b *testing.B) {
	srv := startGWIRServer(b, serverConfig{untracked: true})
	payload := payloadFor(12345)

	for _, mode := range []struct {
		name string
		opts []EngineOption
	}{
		{"sleep", []EngineOption{WithClientBusyPoll(0)}},
		{"busypoll", nil},
	} {
		e := testEngine(b, mode.opts...)
		b.Run(mode.name+"/seq", func(b *testing.B) {
			c := dialOn(b, e, srv.addr.String())
			ctx := context.Background()
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Call(ctx, methodEcho, payload, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mode.name+"/outstanding64", func(b *testing.B) {
			c := dialOn(b, e, srv.addr.String())
			benchPipelined(b, c, payload, 64)
		})
	}

	b.Run("net.UDPConn/seq", func(b *testing.B) {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.addr))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		req := make([]byte, 0, 128)
		in := make([]byte, 2048)
		method := proto.MethodID(methodEcho)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			f, err := proto.EncodeRequest(req[:cap(req)], uint64(i+1), method, 0, payload)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Write(f); err != nil {
				b.Fatal(err)
			}
			n, err := conn.Read(in)
			if err != nil {
				b.Fatal(err)
			}
			if r, err := proto.Parse(in[:n]); err != nil || r.RequestID() != uint64(i+1) {
				b.Fatalf("reply %v: %v", r.RequestID(), err)
			}
		}
	})

	b.Run("net.UDPConn/outstanding64", func(b *testing.B) {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.addr))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadBuffer(4 << 20)
		method := proto.MethodID(methodEcho)
		req := make([]byte, 128)
		send := func(id uint64) {
			f, err := proto.EncodeRequest(req, id, method, 0, payload)
			if err == nil {
				_, err = conn.Write(f)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		in := make([]byte, 2048)
		b.ReportAllocs()
		b.ResetTimer()
		sent := 0
		for ; sent < min(64, b.N); sent++ {
			send(uint64(sent + 1))
		}
		// No retransmission here: loopback with a 4 MiB buffer does not
		// drop 64 datagrams, and a lost one would hang (bounded by the
		// benchmark's timeout).
		for range b.N {
			n, err := conn.Read(in)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Parse(in[:n]); err != nil {
				b.Fatal(err)
			}
			if sent < b.N {
				sent++
				send(uint64(sent))
			}
		}
	})
}

func benchPipelined(b *testing.B, c *Client, payload []byte, outstanding int) {
	ctx := context.Background()
	done := make(chan *Call, outstanding)
	bufs := make([][]byte, outstanding)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 64)
	}
	b.ReportAllocs()
	b.ResetTimer()
	started := 0
	for ; started < min(outstanding, b.N); started++ {
		c.Go(ctx, methodEcho, payload, bufs[started], done)
	}
	for completed := 0; completed < b.N; completed++ {
		call := <-done
		if call.Err != nil {
			b.Fatal(call.Err)
		}
		buf := call.Reply.Payload[:0]
		call.Release()
		if started < b.N {
			c.Go(ctx, methodEcho, payload, buf, done)
			started++
		}
	}
}

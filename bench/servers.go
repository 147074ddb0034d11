package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/xsk"
	"golang.org/x/sys/unix"
)

// ServeNetUDP runs the plain Go baseline for GWIR until ctx ends: one
// net.UDPConn, one goroutine, each request parsed with proto and answered
// with its payload — what a Go service would write without zerohop (the
// body of `zerohop bench-server --kind netudp`).
func ServeNetUDP(ctx context.Context, addr string) error {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("bench: netudp listen %s: %w", addr, err)
	}
	udp := conn.(*net.UDPConn)
	stop := context.AfterFunc(ctx, func() { udp.Close() })
	defer stop()
	in, out := make([]byte, 65536), make([]byte, 65536)
	for {
		n, from, err := udp.ReadFromUDPAddrPort(in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bench: netudp read: %w", err)
		}
		f, err := proto.Parse(in[:n])
		if err != nil || f.Kind() != proto.KindRequest {
			continue
		}
		reply, err := proto.EncodeResponse(out, f.RequestID(), f.MethodID(), proto.StatusOK, f.Payload())
		if err == nil {
			udp.WriteToUDPAddrPort(reply, from)
		}
	}
}

// ServeNetHTTP runs the net/http peer until ctx ends: POST /echo answers
// with the request body, over keep-alive connections (the body of
// `zerohop bench-server --kind nethttp`).
func ServeNetHTTP(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bench: nethttp listen %s: %w", addr, err)
	}
	bufs := sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		buf := *bp
		n := 0
		for n < len(buf) {
			m, err := r.Body.Read(buf[n:])
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(buf[:n])
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("bench: nethttp serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(shutCtx)
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// RawXSKConfig configures the raw AF_XDP echo loop.
type RawXSKConfig struct {
	Addr  string // IP:PORT steered to the socket
	Iface string
	Queue int
	Core  int // -1: do not pin
}

// Raw XSK sizes, as the runtime's XSK backend uses (DESIGN: 16 K frames,
// 8 K rings lose nothing to a preempted loop).
const (
	rawFrames    = 16384
	rawFrameSize = 4096
	rawBatch     = 64
)

// ServeRawXSK runs the ceiling variant until ctx ends: an AF_XDP socket on
// one queue, the bpf program steering the port to it, and a busy-polling
// loop that swaps the Ethernet/IP/UDP addresses and ports of each datagram
// in place and sends it back, without looking at its payload.
func ServeRawXSK(ctx context.Context, cfg RawXSKConfig) (err error) {
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("bench: raw-xsk address %q: %w", cfg.Addr, err)
	}
	ifc, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return fmt.Errorf("bench: raw-xsk interface %s: %w", cfg.Iface, err)
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if cfg.Core >= 0 {
		var set unix.CPUSet
		set.Set(cfg.Core)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("bench: raw-xsk pinning to core %d: %w", cfg.Core, err)
		}
	}
	prog, err := bpf.Attach(cfg.Iface, bpf.Options{})
	if err != nil {
		return fmt.Errorf("bench: raw-xsk attaching XDP to %s: %w", cfg.Iface, err)
	}
	defer prog.Close()
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: rawFrames, FrameSize: rawFrameSize})
	if err != nil {
		return fmt.Errorf("bench: raw-xsk UMEM: %w", err)
	}
	defer umem.Close()
	sock, err := umem.Open(ifc.Index, cfg.Queue, xsk.SocketConfig{RXSize: 8192, FillSize: 8192, TXSize: 4096, CompletionSize: 4096})
	if err != nil {
		return fmt.Errorf("bench: raw-xsk socket on %s queue %d: %w", cfg.Iface, cfg.Queue, err)
	}
	if err := prog.SetSocket(cfg.Queue, sock.FD()); err != nil {
		return fmt.Errorf("bench: raw-xsk registering the socket: %w", err)
	}
	svc := bpf.Service{Port: ap.Port(), ID: 1}
	if !ap.Addr().IsUnspecified() {
		svc.Addr = ap.Addr()
	}
	if err := prog.AddService(svc); err != nil {
		return fmt.Errorf("bench: raw-xsk steering port %d: %w", ap.Port(), err)
	}
	rx := make([]xsk.Desc, rawBatch)
	tx := make([]xsk.Desc, 0, rawBatch)
	var pkt netstack.Packet
	sock.Refill(sock.Free())
	for iter := 0; ; iter++ {
		if iter&1023 == 0 && ctx.Err() != nil {
			return nil
		}
		n := sock.Receive(rx)
		for _, d := range rx[:n] {
			frame := sock.Frame(d.Addr)
			if int(d.Len) > len(frame) || netstack.Parse(frame[:d.Len], ap.Port(), &pkt) != nil || pkt.Class != netstack.ClassUDP {
				sock.Release(d.Addr)
				continue
			}
			reply, err := netstack.Reply(&pkt, len(pkt.Payload))
			if err != nil {
				sock.Release(d.Addr)
				continue
			}
			tx = append(tx, xsk.Desc{Addr: d.Addr, Len: uint32(len(reply))})
		}
		for len(tx) > 0 {
			k := sock.Transmit(tx)
			tx = tx[:copy(tx, tx[k:])]
			if err := sock.Kick(); err != nil {
				return fmt.Errorf("bench: raw-xsk TX kick: %w", err)
			}
			if k == 0 {
				sock.ReapCompletions()
			}
		}
		if sock.TXPending() > 0 {
			sock.Kick()
		}
		sock.ReapCompletions()
		if sock.Refill(sock.Free()) > 0 && sock.FillNeedsWakeup() {
			sock.WakeFill()
		}
	}
}

package bench

import (
	"context"
	"fmt"

	"github.com/panjf2000/gnet/v2"
	"github.com/zerohop/zerohop/proto"
)

// VariantGnet is the GWIR echo on gnet's UDP event loop (gnet v2,
// multicore off): what a Go developer who wants an event loop instead of
// net would pick.
const VariantGnet = "gnet"

// gnetEcho answers GWIR requests from gnet's event loop, like ServeNetUDP
// does from a goroutine: proto.Parse, proto.EncodeResponse of the payload.
type gnetEcho struct {
	gnet.BuiltinEventEngine
	engine gnet.Engine
	booted chan struct{}
	out    []byte
}

func (h *gnetEcho) OnBoot(e gnet.Engine) gnet.Action {
	h.engine = e
	close(h.booted)
	return gnet.None
}

// OnTraffic gets one datagram per call on a UDP engine; the bytes of
// Next stay valid until OnTraffic returns.
func (h *gnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	in, err := c.Next(-1)
	if err != nil {
		return gnet.None
	}
	f, err := proto.Parse(in)
	if err != nil || f.Kind() != proto.KindRequest {
		return gnet.None
	}
	reply, err := proto.EncodeResponse(h.out, f.RequestID(), f.MethodID(), proto.StatusOK, f.Payload())
	if err == nil {
		c.Write(reply)
	}
	return gnet.None
}

// ServeGnet runs the gnet variant until ctx ends (the body of `zerohop
// bench-server --kind gnet`): one event loop (multicore off; the harness
// pins the process to the server core, so GOMAXPROCS is 1), on a UDP
// listener at addr.
func ServeGnet(ctx context.Context, addr string) error {
	h := &gnetEcho{booted: make(chan struct{}), out: make([]byte, 65536)}
	ran := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		select {
		case <-h.booted:
			h.engine.Stop(context.Background())
		case <-ran:
		}
	})
	defer stop()
	err := gnet.Run(h, "udp://"+addr, gnet.WithMulticore(false))
	close(ran)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("bench: gnet on %s: %w", addr, err)
	}
	return nil
}

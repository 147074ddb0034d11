// Package echo is the service `zerohop serve` runs and the tests and
// benchmarks call: zerohop.Echo/Echo returns the request payload unchanged;
// zerohop.Echo/Sum returns field 1 (varint) = the sum of every varint field
// 1 in the request. Both run on the event loop and allocate nothing.
package echo

import (
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

// Method names.
const (
	EchoMethod = "zerohop.Echo/Echo"
	SumMethod  = "zerohop.Echo/Sum"
)

// Register adds the demo methods to s.
func Register(s *runtime.Server) {
	s.Handle(EchoMethod, Echo)
	s.Handle(SumMethod, Sum)
}

// Echo answers with the request's payload.
func Echo(req *runtime.Request, resp *runtime.Response) {
	resp.Write(req.Payload()) // a too-large echo becomes TOO_LARGE by itself
}

// Sum answers field 1 = the sum of the request's varint fields 1. A
// malformed payload is answered BAD_FRAME with the iterator's message.
func Sum(req *runtime.Request, resp *runtime.Response) {
	var sum uint64
	fields := req.Fields()
	for fields.Next() {
		if f := fields.Field(); f.Num() == 1 && f.Type() == protowire.VarintType {
			sum += f.Uint64()
		}
	}
	if err := fields.Err(); err != nil {
		resp.Error(proto.StatusBadFrame, err.Error())
		return
	}
	resp.AppendVarint(1, sum)
}

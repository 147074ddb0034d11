// Command protoc-gen-zerohop is a protoc plugin that generates typed zerohop
// servers and clients from the service blocks of .proto files, beside the
// messages protoc-gen-go generates.
//
//	protoc --go_out=. --go_opt=paths=source_relative \
//	       --zerohop_out=. --zerohop_opt=paths=source_relative kv.proto
//
// For each service S of a file x.proto it writes x_zerohop.pb.go, in the
// same Go package as protoc-gen-go's x.pb.go, holding:
//
//   - a constant SMMethod = "pkg.S/M" per method M: the full method name
//     whose FNV-1a hash is the method id on the wire;
//   - SServer, the interface a server implements, one
//     M(context.Context, *Req) (*Rep, error) per method, and
//     RegisterSServer(*runtime.Server, SServer);
//   - SClient, the same methods as a caller sees them, and
//     NewSClient(*runtime.Client) SClient.
//
// The code calls package github.com/zerohop/zerohop/typed, which decodes and
// encodes the messages with google.golang.org/protobuf and maps errors to
// statuses (typed.Error for the application's, 16 and up).
//
// Where a handler runs is chosen per method, per service, or for the whole
// run, the most specific choice winning:
//
//   - the plugin parameter handlers=loop (the default) or handlers=blocking;
//   - a line "zerohop:loop" or "zerohop:blocking" in the leading comment of
//     a service (every method) or of a method (that method).
//
// loop registers with Server.Handle: the method runs on the event loop that
// received the request and must not block. blocking registers with
// Server.HandleBlocking: it runs on the server's worker pool and may block
// (disk, locks held long, calls to other services).
//
// Parameters: handlers=loop|blocking, and protogen's own paths= and
// module=. Streaming methods are refused (GWIR v1 calls are unary), as are
// two methods of one file whose ids collide and unknown zerohop: directives.
package main

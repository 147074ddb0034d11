// Package typed is the small runtime layer under the code protoc-gen-zerohop
// generates: it turns a typed method (a func from one generated protobuf
// message to another) into a runtime.HandlerFunc, calls such a method through
// a runtime.Client, and carries application errors across the wire.
//
// Contract:
//   - Handler decodes the request payload with google.golang.org/protobuf
//     into a fresh message. Decoding copies: the message, its strings and its
//     bytes fields are the handler's to keep after it returns, unlike
//     Request.Payload, which aliases the receive buffer (a NIC frame on the
//     XSK backend). The reply is encoded into a pooled buffer and written to
//     the Response; a reply that does not fit one datagram becomes TOO_LARGE.
//   - A payload that does not decode is answered BAD_FRAME. A method's error
//     becomes the reply status: an *Error (or a *runtime.StatusError) keeps
//     its status and message, context.DeadlineExceeded becomes
//     DEADLINE_EXCEEDED, anything else INTERNAL with the error's text.
//   - Invoke returns nil for an OK reply, an *Error for an application status
//     (proto.StatusApplication, 16, and up), a *runtime.StatusError for a
//     protocol status (1..15), or the runtime.Client's error when no reply
//     came.
//
// This layer allocates (protobuf decoding and encoding do, per call); the
// request path underneath does not. Write handlers against runtime.Request
// and runtime.Response directly (Fields, AppendVarint, …) where a method must
// stay at 0 allocs/op; see docs/typed.md for when to use which.
//
// The ctx given to a method carries the caller's deadline (the DEADLINE
// extension tag, from the request's arrival) and ends when the server
// shuts down; for a blocking method it is the request's Context.
package typed

// Package proto implements GWIR v1, zerohop's frame format: a fixed 24-byte
// big-endian header followed by a payload of protobuf wire-format fields. One
// frame travels per UDP datagram; on a TCP stream frames follow each other
// back to back (see Stream).
//
// Contract:
//   - Parse checks a received datagram and returns a Frame, a view into the
//     caller's bytes: nothing is copied, and the Frame (its payload and every
//     Field read from it) is valid exactly as long as those bytes are.
//   - The Encode* functions and Seal write into a buffer the caller provides
//     and never allocate; a buffer that is too small is an error, never a
//     reallocation.
//   - Nothing in this package allocates on a valid frame or payload, and no
//     input makes it panic.
//
// Errors: Parse returns an Error whose class tells the caller what the bad
// input policy wants done with the datagram:
//
//	errors.Is(err, ErrDrop)     → drop it silently and count it (err.(Error).Reason() says why)
//	errors.Is(err, ErrBadFrame) → answer a RESPONSE with status BAD_FRAME and the
//	                              request id of the returned header view (EncodeBadFrame)
//
// Error values are small integers: returning and comparing them does not
// allocate. Fields reports a malformed payload as a *FieldError carrying the
// byte offset of the field that could not be read.
//
// The package knows nothing of sockets; docs/protocol.md describes the bytes.
package proto

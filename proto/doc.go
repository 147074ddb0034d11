// Package proto implements GWIR v1, zerohop's frame format: a fixed 24-byte
// big-endian header followed by a payload of protobuf wire-format fields,
// optionally preceded by an extension block (flag EXT). One frame travels
// per UDP datagram; on a TCP stream frames follow each other back to back
// (see Stream).
//
// Contract:
//   - Parse checks a received datagram, its extension block included, and
//     returns a Frame, a view into the caller's bytes: nothing is copied, and
//     the Frame (its payload, every extension value and every Field read
//     from it) is valid exactly as long as those bytes are. Stream applies
//     the same checks to each frame it cuts out of a byte stream.
//   - Frame.Payload is the message alone, after the block; PayloadLen is the
//     length field, block included. Frame.Ext iterates the block's entries,
//     and Deadline, Trace, TraceState, Caller, ServiceTime, RetryAfter,
//     Attempt and ExtValue read single entries, each a short walk of the
//     block. A TRACE whose version is not 0, or whose ids are zero, reads as
//     absent; unknown tags (0, 8–127) are skipped; application tags
//     (128–255) are read through ExtValue and Ext.
//   - The Encode* functions, Seal and SealExt write into a buffer the caller
//     provides and never allocate; a buffer that is too small is an error,
//     never a reallocation. ExtBuilder collects the entries of a block as a
//     fixed-size value (at most MaxAppExt application entries, values up to
//     MaxExtValue bytes, a block of at most MaxExtBlockLen bytes); SealExt
//     places header and block in front of a payload already in the buffer
//     (ResponseHeadroom bytes in front suffice for SERVICE_TIME and
//     RETRY_AFTER), Frame.SetDeadline and Frame.SetAttempt patch an encoded
//     frame for a retransmission, and StripExt rewrites a frame without its
//     block for a peer that does not speak EXT.
//   - Nothing in this package allocates on a valid frame or payload, and no
//     input makes it panic. Payload and the extension views also stay in
//     bounds on a Frame of HeaderLen bytes or more that Parse did not check.
//
// Errors: Parse returns an Error whose class tells the caller what the bad
// input policy wants done with the datagram:
//
//	errors.Is(err, ErrDrop)     → drop it silently and count it (err.(Error).Reason() says why)
//	errors.Is(err, ErrBadFrame) → answer a RESPONSE with status BAD_FRAME and the
//	                              request id of the returned header view (EncodeBadFrame)
//
// A broken extension block is ErrExtLen, ErrExtEntries, ErrExtRepeated or
// ErrExtSize: class ErrBadFrame on a REQUEST, ErrDrop on a RESPONSE. A SEALED
// frame is ErrSealed from Parse: ParseSealed checks its clear header and
// seal prefix (ErrSealedPrefix) for the receiver that holds the session
// keys (mesh/identity opens it in place and hands Parse the plaintext). Error values are small integers: returning and
// comparing them does not allocate. Fields reports a malformed payload as a
// *FieldError carrying the byte offset of the field that could not be read.
// ExtBuilder's setters record the first value they cannot take (ErrExtTag,
// ErrExtValueTooLong, ErrExtTooMany), and every encoder given the builder
// returns it.
//
// The package knows nothing of sockets; docs/protocol.md describes the bytes.
package proto

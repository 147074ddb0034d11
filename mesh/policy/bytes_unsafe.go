package policy

import "unsafe"

// stringBytes views s as bytes without copying, for matchers that take
// bytes (the authorization policy's identity globs): a SPIFFE ID from
// Request.Identity is longer than the compiler's stack buffer for a
// []byte conversion, so a copy would allocate on every call. The bytes
// must never be written.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

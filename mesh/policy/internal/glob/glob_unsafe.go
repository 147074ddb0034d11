package glob

import "unsafe"

// unsafeString views b as a string for the duration of a read-only call.
// The caller must not keep the result or let b change while it is in use.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

package proto_test

// An independent encoder and decoder of the extension block, written from
// DESIGN.md ("The extension block") and not from the package: no proto
// constant, type or function is used below except in the comments. The
// differential tests and FuzzExt hold the package to it.

// refEntry is one entry of a block: tag u8, len u8, value.
type refEntry struct {
	tag byte
	val []byte
}

// The table of DESIGN.md: tag → value size, -1 for "≤ 255 bytes".
var refSizes = map[byte]int{
	1: 4,  // DEADLINE u32 µs
	2: 26, // TRACE: version 0, trace-id 16, span-id 8, flags 1
	3: -1, // TRACESTATE
	4: -1, // CALLER
	5: 4,  // SERVICE_TIME u32 ns
	6: 4,  // RETRY_AFTER u32 µs
	7: 1,  // ATTEMPT u8
}

// refBody is the payload of a frame with EXT: ext_len (big-endian u16), the
// entries back to back, then the message.
func refBody(entries []refEntry, msg []byte) []byte {
	var block []byte
	for _, e := range entries {
		block = append(block, e.tag, byte(len(e.val)))
		block = append(block, e.val...)
	}
	out := []byte{byte(len(block) >> 8), byte(len(block))}
	out = append(out, block...)
	return append(out, msg...)
}

// refFrame writes a header by hand around body: magic "GWIR", version 1,
// length, kind, request id, method id, status, flags.
func refFrame(kind byte, flags uint16, id uint64, method uint32, status uint16, body []byte) []byte {
	b := []byte{'G', 'W', 'I', 'R', 1, byte(len(body) >> 8), byte(len(body)), kind}
	for i := 7; i >= 0; i-- {
		b = append(b, byte(id>>(8*i)))
	}
	b = append(b, byte(method>>24), byte(method>>16), byte(method>>8), byte(method))
	b = append(b, byte(status>>8), byte(status), byte(flags>>8), byte(flags))
	return append(b, body...)
}

// Violations of the block rules, as a set.
const (
	refBadLen    = 1 << iota // ext_len larger than length − 2 (or no room for ext_len)
	refBadFill               // entries do not exactly fill ext_len
	refBadRepeat             // a tag 1–127 twice
	refBadSize               // a known tag with the wrong size
)

// refDecoded is what the reference makes of a payload with EXT.
type refDecoded struct {
	bad     int // the violations; 0 when the block is valid
	entries []refEntry
	msg     []byte
}

// refDecode applies the rules to body (the bytes after the header). It first
// splits the entries as far as they go, then checks the rules over the
// list; every rule broken is reported, so the package (which stops at the
// first) must name one of them.
func refDecode(body []byte) refDecoded {
	if len(body) < 2 {
		return refDecoded{bad: refBadLen}
	}
	n := int(body[0])<<8 | int(body[1])
	if 2+n > len(body) {
		return refDecoded{bad: refBadLen}
	}
	var d refDecoded
	block := body[2 : 2+n]
	for len(block) > 0 {
		if len(block) < 2 || 2+int(block[1]) > len(block) {
			d.bad |= refBadFill
			break
		}
		d.entries = append(d.entries, refEntry{block[0], block[2 : 2+int(block[1])]})
		block = block[2+int(block[1]):]
	}
	count := map[byte]int{}
	for _, e := range d.entries {
		count[e.tag]++
		if e.tag >= 1 && e.tag <= 127 && count[e.tag] == 2 {
			d.bad |= refBadRepeat
		}
		if want, known := refSizes[e.tag]; known && want >= 0 && len(e.val) != want {
			d.bad |= refBadSize
		}
	}
	d.msg = body[2+n:]
	return d
}

// find returns the first value with tag t.
func (d refDecoded) find(t byte) ([]byte, bool) {
	for _, e := range d.entries {
		if e.tag == t {
			return e.val, true
		}
	}
	return nil, false
}

// u32 reads a big-endian u32 value of tag t.
func (d refDecoded) u32(t byte) (uint64, bool) {
	v, ok := d.find(t)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return uint64(v[0])<<24 | uint64(v[1])<<16 | uint64(v[2])<<8 | uint64(v[3]), true
}

// trace reads TRACE the W3C way: version 0 only, ids not all zero.
func (d refDecoded) trace() (id [16]byte, span [8]byte, flags byte, ok bool) {
	v, found := d.find(2)
	if !found || len(v) != 26 || v[0] != 0 {
		return id, span, 0, false
	}
	copy(id[:], v[1:17])
	copy(span[:], v[17:25])
	zeroID, zeroSpan := true, true
	for _, c := range id {
		zeroID = zeroID && c == 0
	}
	for _, c := range span {
		zeroSpan = zeroSpan && c == 0
	}
	if zeroID || zeroSpan {
		return id, span, 0, false
	}
	return id, span, v[25], true
}

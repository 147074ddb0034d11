package proto_test

import (
	"testing"
	"time"

	gproto "google.golang.org/protobuf/proto"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/proto/internal/testpb"
)

// benchPayload is a 64-byte payload of 4 fields (varint, string, bytes,
// fixed32), marshalled by the reference implementation.
func benchPayload(t testing.TB) []byte {
	t.Helper()
	msg := &testpb.Sample{
		Id:   1234567890123,
		Name: "zerohop.Echo/Echo payload",
		Body: []byte("0123456789abcdef0123456"),
		Crc:  0xcafef00d,
	}
	b, err := gproto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 64 {
		t.Fatalf("bench payload is %d bytes, want 64", len(b))
	}
	return b
}

// BenchmarkParseIterate is the request path: parse a frame and read its 4
// payload fields in place.
func BenchmarkParseIterate(b *testing.B) {
	payload := benchPayload(b)
	req := make([]byte, proto.HeaderLen+len(payload))
	if _, err := proto.EncodeRequest(req, 1, proto.MethodID("zerohop.Echo/Echo"), 0, payload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	var sum uint64
	for b.Loop() {
		v, err := parseIterate(req)
		if err != nil {
			b.Fatal(err)
		}
		sum += v
	}
	if sum == 0 {
		b.Fatal("nothing read")
	}
}

// parseIterate is the body of BenchmarkParseIterate, in a function of its own
// because b.Loop keeps calls in its loop body from being inlined, which a
// real request path would not suffer.
func parseIterate(req []byte) (uint64, error) {
	f, err := proto.Parse(req)
	if err != nil {
		return 0, err
	}
	var sum uint64
	var it proto.Fields
	it.Reset(f.Payload())
	for it.Next() {
		fld := it.Field()
		switch fld.Num() {
		case 1, 4:
			sum += fld.Uint64()
		case 2, 3:
			sum += uint64(len(fld.Bytes()))
		}
	}
	return sum, it.Err()
}

// BenchmarkUnmarshal is the reference for BenchmarkParseIterate: the same 64
// payload bytes decoded by proto.Unmarshal into the generated message (reset
// and reused, as a careful server would).
func BenchmarkUnmarshal(b *testing.B) {
	payload := benchPayload(b)
	msg := &testpb.Sample{}
	b.ReportAllocs()
	b.SetBytes(int64(proto.HeaderLen + len(payload)))
	for b.Loop() {
		msg.Reset()
		if err := gproto.Unmarshal(payload, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeResponse(b *testing.B) {
	payload := benchPayload(b)
	tx := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.EncodeResponse(tx, 1, 2, proto.StatusOK, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseIterateVsUnmarshal interleaves the two benchmarks above in
// blocks of 1,000 calls and reports how many times faster Parse+Fields is
// than proto.Unmarshal (x-faster). On a shared, noisy machine the
// interleaving keeps both sides under the same load, which separate
// benchmarks cannot promise.
func BenchmarkParseIterateVsUnmarshal(b *testing.B) {
	payload := benchPayload(b)
	req := make([]byte, proto.HeaderLen+len(payload))
	if _, err := proto.EncodeRequest(req, 1, proto.MethodID("zerohop.Echo/Echo"), 0, payload); err != nil {
		b.Fatal(err)
	}
	msg := &testpb.Sample{}
	const block = 1000
	var ours, theirs time.Duration
	var sum uint64
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for range block {
			v, err := parseIterate(req)
			if err != nil {
				b.Fatal(err)
			}
			sum += v
		}
		mid := time.Now()
		for range block {
			msg.Reset()
			if err := gproto.Unmarshal(payload, msg); err != nil {
				b.Fatal(err)
			}
		}
		ours += mid.Sub(start)
		theirs += time.Since(mid)
	}
	if sum == 0 {
		b.Fatal("nothing read")
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N*block), "parse-ns/call")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N*block), "unmarshal-ns/call")
	b.ReportMetric(float64(theirs)/float64(ours), "x-faster")
}

// BenchmarkParse compares Parse on the same 64-byte payload without and
// with an extension block (DEADLINE, TRACE, CALLER, ATTEMPT and one
// application entry: 58 bytes of block), the cost of the block's walk.
func BenchmarkParse(b *testing.B) {
	payload := benchPayload(b)
	plain := make([]byte, proto.HeaderLen+len(payload))
	if _, err := proto.EncodeRequest(plain, 1, 2, 0, payload); err != nil {
		b.Fatal(err)
	}
	for name, req := range map[string][]byte{"plain": plain, "ext": extRequest(b, payload)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(req)))
			var n int
			for b.Loop() {
				f, err := proto.Parse(req)
				if err != nil {
					b.Fatal(err)
				}
				n += len(f)
			}
			if n == 0 {
				b.Fatal("nothing parsed")
			}
		})
	}
}

// BenchmarkParseIterateExt is BenchmarkParseIterate on the request with
// an extension block.
func BenchmarkParseIterateExt(b *testing.B) {
	req := extRequest(b, benchPayload(b))
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	var sum uint64
	for b.Loop() {
		v, err := parseIterate(req)
		if err != nil {
			b.Fatal(err)
		}
		sum += v
	}
	if sum == 0 {
		b.Fatal("nothing read")
	}
}

// BenchmarkExtAccessors reads what a server reads from each request with a
// block: Deadline, Attempt, Caller and Trace (four walks of the block).
func BenchmarkExtAccessors(b *testing.B) {
	f, err := proto.Parse(extRequest(b, benchPayload(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		sum += readExt(f)
	}
	if sum == 0 {
		b.Fatal("nothing read")
	}
}

func readExt(f proto.Frame) uint64 {
	d, _ := f.Deadline()
	a, _ := f.Attempt()
	tc, _ := f.Trace()
	return uint64(d) + uint64(a) + uint64(len(f.Caller())) + uint64(tc.SpanID[0])
}

// BenchmarkEncodeRequestExt is the client's encoder: a builder filled per
// call (DEADLINE, TRACE, CALLER, ATTEMPT) and the 64-byte payload.
func BenchmarkEncodeRequestExt(b *testing.B) {
	payload := benchPayload(b)
	tx := make([]byte, 2048)
	tc := proto.TraceContext{TraceID: [16]byte{1}, SpanID: [8]byte{2}, Flags: 1}
	b.ReportAllocs()
	for b.Loop() {
		var x proto.ExtBuilder
		x.SetDeadline(250 * time.Millisecond)
		x.SetTrace(tc)
		x.SetCaller(caller)
		x.SetAttempt(0)
		if _, err := proto.EncodeRequestExt(tx, 1, 2, 0, &x, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRetransmitPatch is the client's retransmission: DEADLINE and
// ATTEMPT overwritten in the encoded frame.
func BenchmarkRetransmitPatch(b *testing.B) {
	f := proto.Frame(extRequest(b, benchPayload(b)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		if !f.SetDeadline(time.Duration(n)*time.Microsecond) || !f.SetAttempt(uint8(n)) {
			b.Fatal("entries not found")
		}
	}
}

// BenchmarkStripExt is the fallback: the request rewritten without its
// block in its own buffer.
func BenchmarkStripExt(b *testing.B) {
	orig := extRequest(b, benchPayload(b))
	buf := make([]byte, len(orig))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, orig)
		if _, err := proto.StripExt(buf, proto.Frame(buf)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealExt is the server's reply: SERVICE_TIME placed with the
// header in front of a 64-byte payload already in the TX buffer.
func BenchmarkSealExt(b *testing.B) {
	payload := benchPayload(b)
	tx := make([]byte, proto.ResponseHeadroom+len(payload))
	copy(tx[proto.ResponseHeadroom:], payload)
	h := proto.Header{Kind: proto.KindResponse, RequestID: 1, MethodID: 2}
	b.ReportAllocs()
	for b.Loop() {
		var x proto.ExtBuilder
		x.SetServiceTime(18 * time.Microsecond)
		if _, err := proto.SealExt(tx, proto.ResponseHeadroom, h, &x); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeErrorExt is an OVERLOADED answer with SERVICE_TIME and
// RETRY_AFTER.
func BenchmarkEncodeErrorExt(b *testing.B) {
	tx := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		var x proto.ExtBuilder
		x.SetServiceTime(time.Microsecond)
		x.SetRetryAfter(5 * time.Millisecond)
		if _, err := proto.EncodeErrorExt(tx, 1, 2, proto.StatusOverloaded, &x, "overloaded"); err != nil {
			b.Fatal(err)
		}
	}
}

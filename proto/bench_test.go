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

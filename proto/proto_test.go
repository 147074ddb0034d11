package proto_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
)

func TestMain(m *testing.M) { leak.Main(m) }

// header builds a raw 24-byte header with every field given, so tests can
// write frames the encoders refuse to produce.
func header(magic uint32, version uint8, length uint16, kind proto.Kind, reqID uint64, method uint32, status proto.Status, flags proto.Flags) []byte {
	b := make([]byte, proto.HeaderLen)
	binary.BigEndian.PutUint32(b[0:], magic)
	b[4] = version
	binary.BigEndian.PutUint16(b[5:], length)
	b[7] = byte(kind)
	binary.BigEndian.PutUint64(b[8:], reqID)
	binary.BigEndian.PutUint32(b[16:], method)
	binary.BigEndian.PutUint16(b[20:], uint16(status))
	binary.BigEndian.PutUint16(b[22:], uint16(flags))
	return b
}

func withPayload(h []byte, payload []byte) []byte { return append(h, payload...) }

func TestParseValid(t *testing.T) {
	payload := []byte{0x08, 0x96, 0x01} // field 1 varint 150
	tests := []struct {
		name string
		b    []byte
	}{
		{"request", withPayload(header(proto.Magic, 1, 3, proto.KindRequest, 7, 0xdeadbeef, 0, 0), payload)},
		{"oneway request", withPayload(header(proto.Magic, 1, 3, proto.KindRequest, 7, 1, 0, proto.FlagOneway), payload)},
		{"empty request", header(proto.Magic, 1, 0, proto.KindRequest, 1<<63, 5, 0, 0)},
		{"response", withPayload(header(proto.Magic, 1, 3, proto.KindResponse, 7, 0xdeadbeef, proto.StatusOK, 0), payload)},
		{"app status response", header(proto.Magic, 1, 0, proto.KindResponse, 7, 0, 300, 0)},
		{"ping", header(proto.Magic, 1, 0, proto.KindPing, 99, 0, 0, 0)},
		{"pong serving", header(proto.Magic, 1, 0, proto.KindPong, 99, 0, proto.PongServing, 0)},
		{"pong draining", header(proto.Magic, 1, 0, proto.KindPong, 99, 0, proto.PongDraining, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := proto.Parse(tt.b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if &f[0] != &tt.b[0] || len(f) != len(tt.b) {
				t.Fatalf("Frame is not a view of the whole input")
			}
			if got := binary.BigEndian.Uint64(tt.b[8:]); f.RequestID() != got {
				t.Errorf("RequestID = %d, want %d", f.RequestID(), got)
			}
			if f.PayloadLen() != len(f.Payload()) || f.Version() != 1 {
				t.Errorf("PayloadLen %d, payload %d bytes, version %d", f.PayloadLen(), len(f.Payload()), f.Version())
			}
			if len(f.Payload()) > 0 && &f.Payload()[0] != &tt.b[proto.HeaderLen] {
				t.Errorf("payload was copied")
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := func() []byte { return header(proto.Magic, 1, 0, proto.KindRequest, 42, 9, 0, 0) }
	tests := []struct {
		name   string
		b      []byte
		reason error
		answer bool
	}{
		{"empty", nil, proto.ErrShort, false},
		{"23 bytes", good()[:23], proto.ErrShort, false},
		{"magic", header(0x47574953, 1, 0, proto.KindRequest, 42, 9, 0, 0), proto.ErrMagic, false},
		{"version 0", header(proto.Magic, 0, 0, proto.KindRequest, 42, 9, 0, 0), proto.ErrVersion, false},
		{"version 2", header(proto.Magic, 2, 0, proto.KindRequest, 42, 9, 0, 0), proto.ErrVersion, false},
		{"length too big", header(proto.Magic, 1, 1, proto.KindRequest, 42, 9, 0, 0), proto.ErrSize, true},
		{"trailing bytes", append(good(), 0), proto.ErrSize, true},
		{"kind 0", header(proto.Magic, 1, 0, 0, 42, 9, 0, 0), proto.ErrKind, true},
		{"kind 5", header(proto.Magic, 1, 0, 5, 42, 9, 0, 0), proto.ErrKind, true},
		{"request method 0", header(proto.Magic, 1, 0, proto.KindRequest, 42, 0, 0, 0), proto.ErrMethod, true},
		{"request status", header(proto.Magic, 1, 0, proto.KindRequest, 42, 9, 1, 0), proto.ErrStatus, true},
		{"request reserved flag", header(proto.Magic, 1, 0, proto.KindRequest, 42, 9, 0, 8), proto.ErrFlags, true},
		{"request sealed", header(proto.Magic, 1, 0, proto.KindRequest, 42, 9, 0, proto.FlagSealed), proto.ErrSealed, true},
		{"ping ext", header(proto.Magic, 1, 0, proto.KindPing, 42, 0, 0, proto.FlagExt), proto.ErrFlags, true},
		{"request top flag", header(proto.Magic, 1, 0, proto.KindRequest, 42, 9, 0, 0x8000), proto.ErrFlags, true},
		{"ping method", header(proto.Magic, 1, 0, proto.KindPing, 42, 9, 0, 0), proto.ErrMethod, true},
		{"ping payload", withPayload(header(proto.Magic, 1, 2, proto.KindPing, 42, 0, 0, 0), []byte{8, 1}), proto.ErrPingPayload, true},
		{"ping oneway", header(proto.Magic, 1, 0, proto.KindPing, 42, 0, 0, proto.FlagOneway), proto.ErrFlags, true},
		{"ping status", header(proto.Magic, 1, 0, proto.KindPing, 42, 0, 1, 0), proto.ErrStatus, true},
		// Broken replies are dropped, never answered.
		{"response size", header(proto.Magic, 1, 9, proto.KindResponse, 42, 9, 0, 0), proto.ErrSize, false},
		{"response flags", header(proto.Magic, 1, 0, proto.KindResponse, 42, 9, 0, proto.FlagOneway), proto.ErrFlags, false},
		{"response sealed", header(proto.Magic, 1, 0, proto.KindResponse, 42, 9, 0, proto.FlagSealed|proto.FlagExt), proto.ErrSealed, false},
		{"pong ext", header(proto.Magic, 1, 0, proto.KindPong, 42, 0, 0, proto.FlagExt), proto.ErrFlags, false},
		{"pong status", header(proto.Magic, 1, 0, proto.KindPong, 42, 0, 2, 0), proto.ErrStatus, false},
		{"pong method", header(proto.Magic, 1, 0, proto.KindPong, 42, 1, 0, 0), proto.ErrMethod, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := proto.Parse(tt.b)
			if err == nil {
				t.Fatal("Parse accepted a bad frame")
			}
			if !errors.Is(err, tt.reason) {
				t.Errorf("error %v is not %v", err, tt.reason)
			}
			if got := errors.Is(err, proto.ErrBadFrame); got != tt.answer {
				t.Errorf("errors.Is(%v, ErrBadFrame) = %v, want %v", err, got, tt.answer)
			}
			if got := errors.Is(err, proto.ErrDrop); got == tt.answer {
				t.Errorf("errors.Is(%v, ErrDrop) = %v, want %v", err, got, !tt.answer)
			}
			var pe proto.Error
			if !errors.As(err, &pe) || pe.Answer() != tt.answer || int(pe.Reason()) >= proto.NumReasons {
				t.Errorf("error %v: As %v, Answer %v, Reason %d", err, errors.As(err, &pe), pe.Answer(), pe.Reason())
			}
			if strings.Contains(err.Error(), "invalid error value") {
				t.Errorf("error has no text: %v", err)
			}
			if tt.answer {
				if len(f) != proto.HeaderLen || f.RequestID() != 42 || len(f.Payload()) != 0 {
					t.Errorf("answerable error came with frame %x", []byte(f))
				}
			} else if f != nil {
				t.Errorf("drop error came with frame %x", []byte(f))
			}
		})
	}
}

func TestErrorIsDistinguishesReasons(t *testing.T) {
	err := error(proto.ErrSize | proto.ErrBadFrame)
	if errors.Is(err, proto.ErrKind) || errors.Is(err, proto.ErrDrop) || errors.Is(err, proto.ErrMagic) {
		t.Errorf("%v matched a foreign sentinel", err)
	}
	if errors.Is(err, io.EOF) {
		t.Errorf("%v matched io.EOF", err)
	}
	if errors.Is(proto.ErrMagic, proto.ErrBadFrame) || !errors.Is(proto.ErrMagic, proto.ErrDrop) {
		t.Errorf("ErrMagic has the wrong class")
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	buf := make([]byte, 256)
	payload := []byte("\x0a\x05hello")
	check := func(name string, f proto.Frame, err error, kind proto.Kind, reqID uint64, method uint32, status proto.Status, flags proto.Flags, payload []byte) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		g, err := proto.Parse(f)
		if err != nil {
			t.Fatalf("%s: Parse of encoded frame: %v", name, err)
		}
		if g.Kind() != kind || g.RequestID() != reqID || g.MethodID() != method || g.Status() != status || g.Flags() != flags || !bytes.Equal(g.Payload(), payload) {
			t.Errorf("%s: got %v id %d method %#x status %v flags %#x payload %q", name, g.Kind(), g.RequestID(), g.MethodID(), g.Status(), g.Flags(), g.Payload())
		}
	}
	m := proto.MethodID("kv.Store/Get")
	f, err := proto.EncodeRequest(buf, 1, m, 0, payload)
	check("request", f, err, proto.KindRequest, 1, m, 0, 0, payload)
	f, err = proto.EncodeRequest(buf, 2, m, proto.FlagOneway, nil)
	check("oneway", f, err, proto.KindRequest, 2, m, 0, proto.FlagOneway, nil)
	f, err = proto.EncodeResponse(buf, 3, m, proto.StatusApplication+4, payload)
	check("response", f, err, proto.KindResponse, 3, m, 20, 0, payload)
	f, err = proto.EncodePing(buf, 4)
	check("ping", f, err, proto.KindPing, 4, 0, 0, 0, nil)
	f, err = proto.EncodePong(buf, 4, proto.PongDraining)
	check("pong", f, err, proto.KindPong, 4, 0, 1, 0, nil)
	f, err = proto.EncodeError(buf, 5, m, proto.StatusUnknownMethod, "no such method")
	check("error", f, err, proto.KindResponse, 5, m, proto.StatusUnknownMethod, 0, append([]byte{0x0a, 14}, "no such method"...))
	if got := string(f.ErrorMessage()); got != "no such method" {
		t.Errorf("ErrorMessage = %q", got)
	}

	// The payload may already sit where the encoder puts it.
	copy(buf[proto.HeaderLen:], payload)
	f, err = proto.EncodeResponse(buf, 6, m, 0, buf[proto.HeaderLen:proto.HeaderLen+len(payload)])
	check("in place", f, err, proto.KindResponse, 6, m, 0, 0, payload)
}

func TestEncodeRefuses(t *testing.T) {
	buf := make([]byte, 64)
	if _, err := proto.EncodeRequest(buf, 1, 0, 0, nil); err != proto.ErrInvalidHeader {
		t.Errorf("method 0: %v", err)
	}
	if _, err := proto.EncodeRequest(buf, 1, 1, 4, nil); err != proto.ErrInvalidHeader {
		t.Errorf("reserved flag: %v", err)
	}
	if _, err := proto.EncodePong(buf, 1, 2); err != proto.ErrInvalidHeader {
		t.Errorf("pong status 2: %v", err)
	}
	if _, err := proto.EncodeResponse(buf, 1, 1, 0, make([]byte, 41)); err != proto.ErrBufferTooSmall {
		t.Errorf("41-byte payload into 64 bytes: %v", err)
	}
	if _, err := proto.EncodeResponse(buf[:23], 1, 1, 0, nil); err != proto.ErrBufferTooSmall {
		t.Errorf("23-byte buffer: %v", err)
	}
	big := make([]byte, proto.MaxFrameLen+1)
	if _, err := proto.EncodeResponse(big, 1, 1, 0, big[:proto.MaxPayload+1]); err != proto.ErrPayloadTooLarge {
		t.Errorf("65536-byte payload: %v", err)
	}
	if _, err := proto.EncodeError(buf, 1, 1, proto.StatusInternal, strings.Repeat("x", 39)); err != proto.ErrBufferTooSmall {
		t.Errorf("long message: %v", err)
	}
	if _, err := proto.Seal(big, proto.Header{Kind: proto.KindResponse}); err != proto.ErrPayloadTooLarge {
		t.Errorf("Seal of 65537 payload bytes: %v", err)
	}
}

func TestSealAfterAppend(t *testing.T) {
	tx := make([]byte, 0, 128)
	frame := tx[:proto.HeaderLen]
	frame = append(frame, 0x08, 0x2a)        // field 1 = 42
	frame = append(frame, 0x12, 2, 'h', 'i') // field 2 = "hi"
	f, err := proto.Seal(frame, proto.Header{Kind: proto.KindResponse, RequestID: 77, MethodID: 5})
	if err != nil {
		t.Fatal(err)
	}
	if &f[0] != &tx[:1][0] {
		t.Fatal("Seal did not work in place")
	}
	g, err := proto.Parse(f)
	if err != nil || g.PayloadLen() != 6 || g.RequestID() != 77 {
		t.Fatalf("Parse(sealed) = len %d id %d, %v", g.PayloadLen(), g.RequestID(), err)
	}
}

func TestEncodeBadFrameNeverLarger(t *testing.T) {
	dst := make([]byte, 1024)
	for size := proto.HeaderLen; size < 200; size++ {
		req := make([]byte, size)
		copy(req, header(proto.Magic, 1, 0, proto.KindRequest, 0xabcdef, 77, 0, 0)) // size ≠ 24+0 unless 24
		req[7] = 9                                                                  // unknown kind: always answerable
		_, perr := proto.Parse(req)
		if !errors.Is(perr, proto.ErrBadFrame) {
			t.Fatalf("size %d: Parse = %v", size, perr)
		}
		f, err := proto.EncodeBadFrame(dst, req, perr)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(f) > size {
			t.Fatalf("size %d: BAD_FRAME response has %d bytes", size, len(f))
		}
		g, err := proto.Parse(f)
		if err != nil {
			t.Fatalf("size %d: response does not parse: %v", size, err)
		}
		if g.Kind() != proto.KindResponse || g.Status() != proto.StatusBadFrame || g.RequestID() != 0xabcdef || g.MethodID() != 77 {
			t.Fatalf("size %d: response %v status %v id %#x method %d", size, g.Kind(), g.Status(), g.RequestID(), g.MethodID())
		}
		msg := g.ErrorMessage()
		if !utf8.Valid(msg) || !strings.HasPrefix(perr.Error(), string(msg)) {
			t.Fatalf("size %d: message %q is not a prefix of %q", size, msg, perr.Error())
		}
		if size >= 200-1 && string(msg) != perr.Error() {
			t.Fatalf("message cut although there was room: %q", msg)
		}
	}
	if _, err := proto.EncodeBadFrame(dst, []byte("xx"), proto.ErrMagic); err != proto.ErrNotAnswerable {
		t.Errorf("drop-class error: %v", err)
	}
	if _, err := proto.EncodeBadFrame(dst, nil, io.EOF); err != proto.ErrNotAnswerable {
		t.Errorf("foreign error: %v", err)
	}
}

func TestMethodIDVectors(t *testing.T) {
	file, err := os.Open("testdata/method_ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		hexID, name, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		want, err := strconv.ParseUint(hexID, 16, 32)
		if err != nil {
			t.Fatalf("bad id in %q: %v", line, err)
		}
		if got := proto.MethodID(name); got != uint32(want) {
			t.Errorf("MethodID(%q) = %08x, want %08x", name, got, want)
		}
		ref := fnv.New32a()
		ref.Write([]byte(name))
		if ref.Sum32() != uint32(want) {
			t.Errorf("hash/fnv disagrees with the vector for %q: %08x", name, ref.Sum32())
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d vectors read", n)
	}
}

func TestStatusAndKindNames(t *testing.T) {
	for s, want := range map[proto.Status]string{0: "OK", 2: "BAD_FRAME", 8: "DEADLINE_EXCEEDED", 9: "STATUS(9)", 16: "APP(16)"} {
		if s.String() != want {
			t.Errorf("Status(%d) = %q, want %q", s, s.String(), want)
		}
	}
	if proto.KindPong.String() != "PONG" || proto.Kind(7).String() != "KIND(7)" {
		t.Errorf("kind names: %v %v", proto.KindPong, proto.Kind(7))
	}
}

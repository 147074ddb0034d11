package proto_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// sealedFrame builds a sealed frame with body bytes of ciphertext+tag
// (contents arbitrary: ParseSealed does not read them).
func sealedFrame(kind proto.Kind, method uint32, status proto.Status, flags proto.Flags, sid uint32, phase uint8, pn uint64, body int) []byte {
	b := header(proto.Magic, 1, uint16(proto.SealedPrefixLen+body), kind, 42, method, status, flags|proto.FlagSealed)
	b = append(b, make([]byte, proto.SealedPrefixLen+body)...)
	proto.PutSealPrefix(b, sid, phase, pn)
	for i := proto.SealedHeaderLen; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func TestParseSealed(t *testing.T) {
	b := sealedFrame(proto.KindRequest, 9, 0, proto.FlagExt|proto.FlagOneway, 0xdeadbeef, 1, 0x00ab_cdef_0123_4567, proto.SealedTagLen+5)
	f, err := proto.ParseSealed(b)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Sealed() || f.SessionID() != 0xdeadbeef || f.KeyPhase() != 1 || f.PacketNumber() != 0x00ab_cdef_0123_4567 {
		t.Fatalf("prefix read back as sealed=%v sid=%#x phase=%d pn=%#x", f.Sealed(), f.SessionID(), f.KeyPhase(), f.PacketNumber())
	}
	// The byte layout of docs/protocol.md: sid at 24, flags at 28, pn at 29–35.
	if got := binary.BigEndian.Uint32(b[24:]); got != 0xdeadbeef || b[28] != 1 || !bytes.Equal(b[29:36], []byte{0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67}) {
		t.Fatalf("prefix bytes %x", b[24:36])
	}
	// Parse itself still refuses to read it as a payload.
	if _, err := proto.Parse(b); !errors.Is(err, proto.ErrSealed) || !errors.Is(err, proto.ErrBadFrame) {
		t.Fatalf("Parse(sealed request) = %v, want ErrSealed of class ErrBadFrame", err)
	}
	resp := sealedFrame(proto.KindResponse, 9, proto.StatusApplication, proto.FlagExt, 7, 0, 1, proto.SealedTagLen)
	if _, err := proto.ParseSealed(resp); err != nil {
		t.Fatalf("sealed response with an empty plaintext: %v", err)
	}
	if _, err := proto.Parse(resp); !errors.Is(err, proto.ErrSealed) || !errors.Is(err, proto.ErrDrop) {
		t.Fatalf("Parse(sealed response) = %v, want ErrSealed of class ErrDrop", err)
	}
}

func TestParseSealedRejects(t *testing.T) {
	ok := func() []byte { return sealedFrame(proto.KindRequest, 9, 0, 0, 1, 0, 1, proto.SealedTagLen) }
	tests := []struct {
		name   string
		b      []byte
		want   proto.Error
		answer bool
	}{
		{"short", ok()[:20], proto.ErrShort, false},
		{"magic", func() []byte { b := ok(); b[0] = 'X'; return b }(), proto.ErrMagic, false},
		{"version", func() []byte { b := ok(); b[4] = 2; return b }(), proto.ErrVersion, false},
		{"size", ok()[:proto.SealedHeaderLen+proto.SealedTagLen-1], proto.ErrSize, true},
		{"not sealed", func() []byte { b := ok(); b[23] &^= byte(proto.FlagSealed); return b }(), proto.ErrFlags, true},
		{"reserved flag", func() []byte { b := ok(); b[22] = 0x80; return b }(), proto.ErrFlags, true},
		{"method 0", sealedFrame(proto.KindRequest, 0, 0, 0, 1, 0, 1, proto.SealedTagLen), proto.ErrMethod, true},
		{"status", sealedFrame(proto.KindRequest, 9, 3, 0, 1, 0, 1, proto.SealedTagLen), proto.ErrStatus, true},
		{"oneway response", sealedFrame(proto.KindResponse, 9, 0, proto.FlagOneway, 1, 0, 1, proto.SealedTagLen), proto.ErrFlags, false},
		{"sealed ping", sealedFrame(proto.KindPing, 0, 0, 0, 1, 0, 1, proto.SealedTagLen), proto.ErrFlags, true},
		{"sealed pong", sealedFrame(proto.KindPong, 0, 0, 0, 1, 0, 1, proto.SealedTagLen), proto.ErrFlags, false},
		{"kind", sealedFrame(9, 9, 0, 0, 1, 0, 1, proto.SealedTagLen), proto.ErrKind, true},
		{"no room for the tag", sealedFrame(proto.KindRequest, 9, 0, 0, 1, 0, 1, proto.SealedTagLen-1), proto.ErrSealedPrefix, true},
		{"prefix cut", func() []byte {
			b := header(proto.Magic, 1, 4, proto.KindRequest, 42, 9, 0, proto.FlagSealed)
			return append(b, 0, 0, 0, 1)
		}(), proto.ErrSealedPrefix, true},
		{"reserved seal flags", func() []byte { b := ok(); b[28] |= 0x02; return b }(), proto.ErrSealedPrefix, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := proto.ParseSealed(tt.b)
			var pe proto.Error
			if !errors.As(err, &pe) || pe.Reason() != tt.want.Reason() || pe.Answer() != tt.answer {
				t.Fatalf("ParseSealed = %v, want %v (answer %v)", err, tt.want, tt.answer)
			}
			if tt.answer && len(f) != proto.HeaderLen || !tt.answer && f != nil {
				t.Fatalf("error view %x", []byte(f))
			}
		})
	}
}

// FuzzParseSealed: no input panics ParseSealed, an accepted frame is the
// input itself, and the differential check against Parse's independent
// header rules: with FlagSealed and FlagExt cleared, a frame ParseSealed
// accepts is one Parse accepts, and the other way round whenever the seal
// prefix rules (room, reserved bits) hold and the kind may be sealed.
func FuzzParseSealed(f *testing.F) {
	f.Add(sealedFrame(proto.KindRequest, 9, 0, proto.FlagExt, 1, 1, 77, proto.SealedTagLen+3))
	f.Add(sealedFrame(proto.KindResponse, 9, 5, 0, 1, 0, 0, proto.SealedTagLen))
	f.Add(sealedFrame(proto.KindPing, 0, 0, 0, 1, 0, 0, proto.SealedTagLen))
	f.Add(header(proto.Magic, 1, 0, proto.KindRequest, 1, 9, 0, proto.FlagSealed))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := proto.ParseSealed(b)
		if err == nil && len(fr) != len(b) {
			t.Fatalf("accepted %d bytes of %d", len(fr), len(b))
		}
		if err != nil {
			var pe proto.Error
			if !errors.As(err, &pe) || int(pe.Reason()) >= proto.NumReasons {
				t.Fatalf("error %v is not a proto.Error", err)
			}
		}
		if len(b) < proto.HeaderLen || proto.Frame(b).Flags()&proto.FlagSealed == 0 {
			if err == nil {
				t.Fatal("accepted a frame without FlagSealed")
			}
			return
		}
		clear := append([]byte{}, b...)
		binary.BigEndian.PutUint16(clear[22:], binary.BigEndian.Uint16(b[22:])&^uint16(proto.FlagSealed|proto.FlagExt))
		_, perr := proto.Parse(clear)
		k := proto.Frame(b).Kind()
		sealable := k == proto.KindRequest || k == proto.KindResponse
		prefixOK := len(b) >= proto.SealedHeaderLen+proto.SealedTagLen && b[28]&0xfe == 0
		if err == nil && perr != nil {
			t.Fatalf("ParseSealed accepted what Parse (unsealed) rejects: %v", perr)
		}
		if err != nil && perr == nil && sealable && prefixOK && proto.Frame(b).PayloadLen() == len(b)-proto.HeaderLen {
			t.Fatalf("ParseSealed rejected (%v) a frame Parse (unsealed) accepts", err)
		}
	})
}

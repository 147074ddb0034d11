package netstack_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/zerohop/zerohop/netstack"
)

// naivePseudoSum is the folded, uncomplemented sum of the UDP pseudo-header
// that a CHECKSUM_PARTIAL sender leaves in the checksum field (Linux:
// ~csum_tcpudp_magic / ~csum_ipv6_magic), written out as RFC 768 and RFC
// 8200 §8.1 lay the pseudo-header out, as an independent reference.
func naivePseudoSum(src, dst netip.Addr, udpLen int) uint16 {
	var hdr []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		hdr = append(append(hdr, s[:]...), d[:]...)
		hdr = append(hdr, 0, netstack.ProtocolUDP, byte(udpLen>>8), byte(udpLen))
	} else {
		s, d := src.As16(), dst.As16()
		hdr = append(append(hdr, s[:]...), d[:]...)
		hdr = binary.BigEndian.AppendUint32(hdr, uint32(udpLen))
		hdr = append(hdr, 0, 0, 0, netstack.ProtocolUDP)
	}
	return naiveChecksum(hdr)
}

// partial rewrites a frame's UDP checksum to the CHECKSUM_PARTIAL pattern.
func partial(v6 bool, delta uint16) func([]byte) {
	return func(b []byte) {
		u, src, dst := 34, v4A, v4B
		if v6 {
			u, src, dst = 54, v6A, v6B
		}
		n := int(binary.BigEndian.Uint16(b[u+4:]))
		binary.BigEndian.PutUint16(b[u+6:], naivePseudoSum(src, dst, n)+delta)
	}
}

// AcceptPartialChecksum accepts exactly the pseudo-header sum and marks the
// packet; without it that frame is ErrChecksum; other wrong values stay
// ErrChecksum either way; replies carry full checksums.
func TestParsePartialChecksum(t *testing.T) {
	strict := netstack.Parser{Port: 9000}
	lax := netstack.Parser{Port: 9000, AcceptPartialChecksum: true}
	for _, v6 := range []bool{false, true} {
		for _, size := range []int{0, 1, 7, 64, 1000} {
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			spec := frameSpec{v6: v6, srcPort: 40000, dstPort: 9000, payload: payload}
			good := gopacketFrame(t, spec)
			spec.mangle = partial(v6, 0)
			part := gopacketFrame(t, spec)
			var p netstack.Packet
			if err := strict.Parse(inBuffer(part), &p); err != netstack.ErrChecksum {
				t.Errorf("v6 %v size %d: strict parse of a partial checksum: %v, want ErrChecksum", v6, size, err)
			}
			if err := lax.Parse(inBuffer(good), &p); err != nil || p.PartialChecksum {
				t.Errorf("v6 %v size %d: a full checksum: %v, partial %v; want accepted, not partial", v6, size, err, p.PartialChecksum)
			}
			buf := inBuffer(part)
			if err := lax.Parse(buf, &p); err != nil || !p.PartialChecksum || p.Class != netstack.ClassUDP {
				t.Fatalf("v6 %v size %d: lax parse of a partial checksum: %v, partial %v, class %d", v6, size, err, p.PartialChecksum, p.Class)
			}
			copy(p.PayloadRoom(), "reply")
			reply, err := netstack.Reply(&p, 5)
			if err != nil {
				t.Fatal(err)
			}
			checkWithGopacket(t, reply)
			var q netstack.Packet
			if err := strict.Parse(reply, &q); err != nil {
				t.Fatalf("the reply to a partial-checksum request fails a strict parse: %v", err)
			}
			for _, delta := range []uint16{1, 0xFFFF, 0x100} {
				spec.mangle = partial(v6, delta)
				if err := lax.Parse(inBuffer(gopacketFrame(t, spec)), &p); err != netstack.ErrChecksum || p.PartialChecksum {
					t.Errorf("v6 %v size %d: pseudo sum %+d: %v, partial %v; want ErrChecksum", v6, size, int16(delta), err, p.PartialChecksum)
				}
			}
			// The pattern of other addresses (a datagram rewritten on
			// the way) is not accepted.
			spec.mangle = func(b []byte) {
				partial(v6, 0)(b)
				if v6 {
					b[14+8+15] ^= 1
				} else {
					b[14+12+3] ^= 1
					binary.BigEndian.PutUint16(b[14+10:], 0)
					binary.BigEndian.PutUint16(b[14+10:], ^naiveChecksum(b[14:34]))
				}
			}
			if err := lax.Parse(inBuffer(gopacketFrame(t, spec)), &p); !errors.Is(err, netstack.ErrChecksum) {
				t.Errorf("v6 %v size %d: partial sum of other addresses: %v, want ErrChecksum", v6, size, err)
			}
		}
	}
	// Zero keeps its meaning.
	spec := frameSpec{v6: true, srcPort: 1, dstPort: 9000, payload: []byte("x"), mangle: func(b []byte) { b[60], b[61] = 0, 0 }}
	var p netstack.Packet
	if err := lax.Parse(inBuffer(gopacketFrame(t, spec)), &p); err != netstack.ErrZeroChecksum {
		t.Errorf("IPv6 zero checksum with the option: %v, want ErrZeroChecksum", err)
	}
}

// Parse is Parser{Port: port}.Parse.
func TestParseIsParser(t *testing.T) {
	frame := inBuffer(gopacketFrame(t, frameSpec{srcPort: 1, dstPort: 9000, payload: []byte("x")}))
	var a, b netstack.Packet
	errA := netstack.Parse(frame, 9000, &a)
	ps := netstack.Parser{Port: 9000}
	errB := ps.Parse(frame, &b)
	if errA != errB || a.Class != b.Class || string(a.Payload) != string(b.Payload) {
		t.Fatalf("Parse %v %+v, Parser.Parse %v %+v", errA, a, errB, b)
	}
	if err := netstack.Parse(frame, 9001, &a); err != nil || a.Class != netstack.ClassOther {
		t.Fatalf("another port: %v, class %d", err, a.Class)
	}
}

package netstack_test

import (
	"net/netip"
	"testing"

	"github.com/zerohop/zerohop/netstack"
)

// TestZeroAlloc pins the per-packet path at 0 allocations: parsing good and
// bad frames, replying in place, building a frame.
func TestZeroAlloc(t *testing.T) {
	good := inBuffer(gopacketFrame(t, frameSpec{v6: true, vlan: 3, srcPort: 1, dstPort: 9000, payload: make([]byte, 64)}))
	bad := inBuffer(gopacketFrame(t, frameSpec{srcPort: 1, dstPort: 9000, payload: make([]byte, 64), mangle: func(b []byte) { b[50] ^= 1 }}))
	part := inBuffer(gopacketFrame(t, frameSpec{v6: true, srcPort: 1, dstPort: 9000, payload: make([]byte, 64), mangle: partial(true, 0)}))
	lax := netstack.Parser{AcceptPartialChecksum: true}
	out := make([]byte, 2048)
	fields := netstack.UDPFields{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(v4A, 1), Dst: netip.AddrPortFrom(v4B, 2)}
	var p netstack.Packet
	cases := map[string]func(){
		"Parse+Reply": func() {
			if err := netstack.Parse(good, 0, &p); err != nil {
				t.Fatal(err)
			}
			if _, err := netstack.Reply(&p, 64); err != nil {
				t.Fatal(err)
			}
		},
		"Parse bad": func() {
			if err := netstack.Parse(bad, 0, &p); err != netstack.ErrChecksum {
				t.Fatal(err)
			}
		},
		"Parser partial checksum": func() {
			if err := lax.Parse(part, &p); err != nil || !p.PartialChecksum {
				t.Fatal(err)
			}
		},
		"BuildUDP": func() {
			if _, err := netstack.BuildUDP(out, &fields, out[42:42+64]); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, n)
		}
	}
}

// BenchmarkParseReply is the per-packet work of the AF_XDP path for a
// 64-byte UDP payload over IPv4: parse and verify the frame, then turn it
// into its reply in place (the reply of one iteration is the request of the
// next, so every iteration verifies and computes full checksums).
func BenchmarkParseReply(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := "IPv4"
		if v6 {
			name = "IPv6"
		}
		b.Run(name, func(b *testing.B) {
			frame := inBuffer(gopacketFrame(b, frameSpec{v6: v6, srcPort: 40000, dstPort: 9000, payload: make([]byte, 64)}))
			var p netstack.Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if err := parseReply(frame, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// parseReply is the benchmark body, in its own function so that b.Loop does
// not keep the calls in it from being inlined.
func parseReply(frame []byte, p *netstack.Packet) error {
	if err := netstack.Parse(frame, 0, p); err != nil {
		return err
	}
	_, err := netstack.Reply(p, len(p.Payload))
	return err
}

// BenchmarkParsePartial parses a 64-byte datagram whose UDP checksum field
// holds the pseudo-header sum (a local sender with TX offload), with
// AcceptPartialChecksum: the full check fails, then the pseudo-header sum
// is compared.
func BenchmarkParsePartial(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := "IPv4"
		if v6 {
			name = "IPv6"
		}
		b.Run(name, func(b *testing.B) {
			frame := inBuffer(gopacketFrame(b, frameSpec{v6: v6, srcPort: 40000, dstPort: 9000, payload: make([]byte, 64), mangle: partial(v6, 0)}))
			lax := netstack.Parser{AcceptPartialChecksum: true}
			var p netstack.Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if err := lax.Parse(frame, &p); err != nil || !p.PartialChecksum {
					b.Fatal(err)
				}
			}
		})
	}
}

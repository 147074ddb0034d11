// Package netstack reads and writes Ethernet, 802.1Q, ARP, IPv4, IPv6 and UDP
// headers in place, for a runtime that receives raw frames (AF_XDP) and
// answers them from the same buffer.
//
// Contract:
//   - Views (Ethernet, VLAN, ARP, IPv4, IPv6, UDP) are byte slices in the
//     gVisor header style: check once (Parse, or IsValid), then accessors
//     and setters without re-checking. A view aliases the frame and is valid
//     as long as the frame's bytes are.
//   - Parse classifies a frame (UDP to our port, ARP, other) and verifies
//     the IPv4 header checksum and the UDP checksum of our datagrams.
//     IP fragments are not reassembled: a UDP fragment is ErrFragment.
//     IPv6 extension headers are not walked: a packet whose first next
//     header is one is ErrExtensionHeader (a fragment header: ErrFragment).
//     A UDP checksum of 0 means "none" on IPv4 and is accepted; on IPv6 it
//     is ErrZeroChecksum.
//   - Reply turns a parsed request frame into its reply in the same buffer;
//     BuildUDP writes a fresh frame into a caller's buffer. Both compute
//     every checksum and neither allocates.
//   - No input makes anything here panic, and nothing allocates per packet.
//
// Errors are Error values, one-byte integers: returning and comparing them
// (errors.Is or ==) does not allocate. Every Parse error means "drop the
// frame and count it"; Error.Reason indexes per-reason counters.
package netstack

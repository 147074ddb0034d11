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
//     is ErrZeroChecksum. A Parser carries the port and options (below).
//   - Reply turns a parsed request frame into its reply in the same buffer;
//     BuildUDP writes a fresh frame into a caller's buffer. Both compute
//     every checksum in full from the bytes (never incrementally from the
//     request's UDP checksum), and neither allocates.
//   - No input makes anything here panic, and nothing allocates per packet.
//
// Errors are Error values, one-byte integers: returning and comparing them
// (errors.Is or ==) does not allocate. Every Parse error means "drop the
// frame and count it"; Error.Reason indexes per-reason counters.
//
// # Partial checksums
//
// A sender on the same host whose interface has TX checksum offload on
// (the default on veth, so the normal case for pod-to-pod traffic on one
// node) hands the kernel a UDP datagram marked CHECKSUM_PARTIAL: the
// checksum field holds only the folded, uncomplemented sum of the
// pseudo-header (addresses, protocol, UDP length), and the device is
// expected to finish it. A veth never does: it passes the buffer to its
// peer in memory, and the receiving kernel trusts it without checking
// (the skb stays CHECKSUM_PARTIAL, which counts as verified). XDP, and so an
// AF_XDP socket, sees the bytes as they are, so a stack that insists on a
// full checksum drops all of this traffic as ErrChecksum.
//
// Parser.AcceptPartialChecksum accepts exactly that pattern: a field equal
// to PseudoHeaderChecksum of the datagram's own addresses and length, and
// nothing else; the Packet is marked PartialChecksum so it can be counted.
// Why that is safe where the runtime enables it (only on virtual
// interfaces, which have no wire):
//
//   - Such a datagram never crossed a wire or a bus: it went from one
//     kernel buffer to another. The UDP checksum guards against corruption
//     in transit, and there was no transit; the kernel itself accepts the
//     same datagram unchecked in the same place.
//   - The checksum is no authentication. Anyone who can put a frame on the
//     link can give it a correct checksum, so accepting the pseudo-header
//     pattern gives a sender nothing it did not have.
//   - Traffic that did cross a wire and reaches a virtual interface (a
//     bridge with a physical port in front of the veth) carries a real
//     checksum. A frame corrupted on the way passes the full check by
//     chance with probability 2^-16; matching the pseudo-header sum is one
//     more 16-bit value, so the chance that corruption goes unnoticed at
//     most doubles, to 2^-15 (and the NIC's own receive checksum, where it
//     checks, stands in front of both). On a physical NIC the option must
//     stay off: there the field is a sender's full checksum or a bug.
//   - Every other wrong value is still ErrChecksum, on IPv4 and IPv6; a
//     field of 0 keeps its meaning (none on IPv4, ErrZeroChecksum on IPv6).
//   - Replies never copy or patch the request's UDP checksum: Reply sums
//     the reply's bytes afresh, so every frame we send has a full, correct
//     checksum (the kernel peer drops bad ones, counting UdpInCsumErrors).
package netstack

package netstack

// Error is why Parse rejected a frame, or why a builder refused. It is a
// one-byte integer: returning it as an error does not allocate.
type Error uint8

const (
	// ErrTruncated: the frame ends inside a header, or before the length
	// an IP or UDP header claims.
	ErrTruncated Error = 1 + iota
	// ErrLength: a length field is impossible (IPv4 header length below 20
	// or above the total length, UDP length below 8).
	ErrLength
	// ErrVersion: the IP version nibble does not match the EtherType.
	ErrVersion
	// ErrChecksum: a wrong IPv4 header checksum, or a wrong UDP checksum
	// on a datagram to our port.
	ErrChecksum
	// ErrZeroChecksum: a UDP datagram over IPv6 without a checksum
	// (RFC 8200 forbids it).
	ErrZeroChecksum
	// ErrFragment: a fragment of a UDP datagram; fragments are not
	// reassembled.
	ErrFragment
	// ErrExtensionHeader: an IPv6 packet whose next header is an extension
	// header; they are not walked.
	ErrExtensionHeader
	// ErrNotUDP: Reply was given a packet that Parse did not classify as
	// ClassUDP.
	ErrNotUDP
	// ErrBufferTooSmall: the frame buffer cannot hold the reply or frame.
	ErrBufferTooSmall
	// ErrTooLarge: the payload does not fit the IP length fields.
	ErrTooLarge
	// ErrAddress: source and destination are not both IPv4 or both IPv6.
	ErrAddress
	// ErrNotARPRequest: ReplyARP was given something else than an ARP
	// request.
	ErrNotARPRequest

	// NumReasons bounds Error values, for per-reason counter arrays.
	NumReasons
)

var errorText = [NumReasons]string{
	0:                  "netstack: invalid error value",
	ErrTruncated:       "netstack: parse: frame truncated",
	ErrLength:          "netstack: parse: impossible length field",
	ErrVersion:         "netstack: parse: IP version does not match the EtherType",
	ErrChecksum:        "netstack: parse: bad checksum",
	ErrZeroChecksum:    "netstack: parse: UDP over IPv6 without checksum",
	ErrFragment:        "netstack: parse: IP fragment (not reassembled)",
	ErrExtensionHeader: "netstack: parse: IPv6 extension header (not supported)",
	ErrNotUDP:          "netstack: reply: packet is not UDP",
	ErrBufferTooSmall:  "netstack: build: buffer too small",
	ErrTooLarge:        "netstack: build: payload too large for IP",
	ErrAddress:         "netstack: build: addresses of different families",
	ErrNotARPRequest:   "netstack: reply: not an ARP request",
}

func (e Error) Error() string {
	if e < NumReasons {
		return errorText[e]
	}
	return errorText[0]
}

// Reason returns e as a small number below NumReasons, to index counters.
func (e Error) Reason() int { return int(e) }

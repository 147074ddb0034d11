// Package identity gives zerohop peers SPIFFE identities and seals their
// frames: a peer authenticates once, out of the data path, and from then
// on every frame it sends is authenticated and encrypted in place with
// keys only the two ends hold, so that a spoofed source address or a
// forged, replayed or altered frame gets nowhere near a handler.
//
// # Identities
//
// A workload's identity is a SPIFFE ID (spiffe://trust-domain/ns/NS/sa/NAME)
// with an X.509-SVID and its key, from a Source: files (LoadDir for
// --identity DIR: cert.pem, key.pem, bundle.pem; FileSource reloads them
// when they change, keeping the old identity when a rewrite does not
// parse) or the SPIFFE Workload API (package workload). SVIDs are checked
// with go-spiffe's x509svid.Verify against the bundle of their trust
// domain; Matcher decides which SPIFFE IDs a side accepts.
//
// # Handshake
//
// Dial (client) and Listener (server) run mutual TLS 1.3 (crypto/tls)
// over TCP at HandshakeAddr: the server's data IP and, by default, its
// UDP port number. Each side verifies the other's SVID and SPIFFE ID
// right after the TLS handshake and, if it refuses, tells the other why
// (a REFUSE message), so both sides report the same sentinel (ErrExpired,
// ErrUntrusted, ErrNotAllowed) in a *HandshakeError. The session's keys
// come from the TLS exporter (RFC 8446 §7.5) through HKDF-SHA256, one
// key and IV per direction; no cryptography is our own.
//
// # Sealed frames
//
// A sealed frame (proto.FlagSealed; layout in docs/protocol.md) keeps its
// GWIR header in the clear as associated data, then carries the receiver's
// session id, a key-phase bit and a 56-bit packet number, then the
// AEAD-sealed extension block and message and a 16-byte tag. The AEAD is
// AES-128-GCM where the CPU has AES instructions, ChaCha20-Poly1305
// otherwise (HardwareSuite); the nonce is the per-direction IV XOR the
// packet number (RFC 9001 §5.3). Receivers keep an RFC 6479 replay window
// of 8,128 packet numbers per session. Senders update their key after
// TableConfig.KeyPackets frames (default 2^22, under RFC 9001 §6.6's 2^23
// for AES-GCM) or KeyLifetime; receivers follow the key-phase bit and keep
// the previous key for KeyGrace.
//
// Sealer.Seal and Sealer.Open work in place in the caller's buffer (the
// UMEM frame, the receive buffer): Seal needs proto.SealedPrefixLen bytes
// free before the frame and proto.SealedTagLen after it; Open returns the
// plaintext frame as a sub-slice of what it was given, valid as long as
// that buffer is. Neither allocates, blocks or panics; a refused frame is
// a Reason (a one-byte error) counted per reason, and must be dropped,
// never answered. A Sealer belongs to one goroutine (one event loop);
// Sessions and Tables are safe for concurrent use, lookups lock-free.
//
// # The runtime hook
//
// Server and Client implement runtime.ServerSealer and
// runtime.ClientSealer (runtime defines them and never imports mesh):
// runtime.WithSealer(NewServer(table, mode)) on a server,
// runtime.WithClientSealer(client) on a Dial. docs/identity.md describes
// the wiring, strict and permissive modes and where the counters live.
// Table.Stats and TableStats.Format are what `zerohop stat` shows.
package identity

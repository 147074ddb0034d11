package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"runtime"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Suite is the AEAD that seals a session's frames. Both use a 12-byte
// nonce and a 16-byte tag, so the frame layout does not depend on it.
type Suite uint8

const (
	// SuiteAES128GCM: AES-128-GCM (NIST SP 800-38D), for hosts with AES
	// and carry-less multiply instructions.
	SuiteAES128GCM Suite = 1
	// SuiteChaCha20Poly1305: ChaCha20-Poly1305 (RFC 8439), constant time
	// in software, for hosts without them.
	SuiteChaCha20Poly1305 Suite = 2
)

func (s Suite) String() string {
	switch s {
	case SuiteAES128GCM:
		return "AES-128-GCM"
	case SuiteChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("Suite(%d)", uint8(s))
}

func (s Suite) valid() bool { return s == SuiteAES128GCM || s == SuiteChaCha20Poly1305 }

func (s Suite) keyLen() int {
	if s == SuiteAES128GCM {
		return 16
	}
	return chacha20poly1305.KeySize
}

// hasAESGCMHardware is crypto/tls's test for an assembly AES-GCM: without
// it Go's AES is a table-free constant-time software implementation that
// is several times slower than ChaCha20-Poly1305.
var hasAESGCMHardware = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE41 && cpu.X86.HasSSSE3 ||
	cpu.ARM64.HasAES && cpu.ARM64.HasPMULL ||
	cpu.S390X.HasAES && cpu.S390X.HasAESCTR && cpu.S390X.HasGHASH ||
	runtime.GOARCH == "ppc64" || runtime.GOARCH == "ppc64le"

// HardwareSuite is the suite this host seals fastest: AES-128-GCM where
// the CPU has AES instructions, ChaCha20-Poly1305 otherwise.
func HardwareSuite() Suite {
	if hasAESGCMHardware {
		return SuiteAES128GCM
	}
	return SuiteChaCha20Poly1305
}

// chooseSuite is the server's pick from the client's preference and its
// own, the rule crypto/tls applies to TLS 1.3 suites: AES-128-GCM only when
// both sides have it in hardware (a client without AES instructions asks
// for ChaCha20-Poly1305 first), and a suite forced by configuration on
// either side wins over the hardware.
func chooseSuite(clientPref Suite, serverPref Suite, serverForced bool) Suite {
	if serverForced {
		return serverPref
	}
	if clientPref == SuiteAES128GCM && serverPref == SuiteAES128GCM {
		return SuiteAES128GCM
	}
	return SuiteChaCha20Poly1305
}

func newAEAD(s Suite, key []byte) (cipher.AEAD, error) {
	switch s {
	case SuiteAES128GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case SuiteChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("identity: unknown suite %d", s)
}

// Key schedule. The handshake's TLS 1.3 exporter (RFC 8446 §7.5) gives a
// 32-byte master secret bound to the connection, the suite and both
// session ids; HKDF-Expand with SHA-256 (RFC 5869) turns it into one
// traffic secret per direction, each traffic secret into a key and an IV,
// and a traffic secret into the next generation's on a key update, the way
// RFC 9001 §5.1 and §6 derive QUIC's packet keys ("quic key", "quic iv",
// "quic ku") with our own labels.
const (
	exporterLabel = "EXPORTER-zerohop-sealed-frames-v1"
	secretLen     = 32
	ivLen         = 12

	labelClientToServer = "zerohop v1 c2s"
	labelServerToClient = "zerohop v1 s2c"
	labelKey            = "zerohop v1 key"
	labelIV             = "zerohop v1 iv"
	labelKeyUpdate      = "zerohop v1 ku"
)

// trafficKey is one generation of one direction's keys.
type trafficKey struct {
	gen    uint8 // generation mod 256; the key phase bit is gen&1
	aead   cipher.AEAD
	iv     [ivLen]byte
	secret [secretLen]byte
}

func expand(secret []byte, label string, n int) []byte {
	out, err := hkdf.Expand(sha256.New, secret, label, n)
	if err != nil {
		// Only a length over 255×32 bytes fails; ours are constants.
		panic("identity: hkdf: " + err.Error())
	}
	return out
}

// directionSecrets splits the exporter's master secret.
func directionSecrets(master []byte) (c2s, s2c [secretLen]byte) {
	copy(c2s[:], expand(master, labelClientToServer, secretLen))
	copy(s2c[:], expand(master, labelServerToClient, secretLen))
	return
}

func newTrafficKey(s Suite, secret [secretLen]byte, gen uint8) (*trafficKey, error) {
	k := &trafficKey{gen: gen, secret: secret}
	key := expand(secret[:], labelKey, s.keyLen())
	copy(k.iv[:], expand(secret[:], labelIV, ivLen))
	a, err := newAEAD(s, key)
	clear(key)
	if err != nil {
		return nil, err
	}
	k.aead = a
	return k, nil
}

// next derives the following generation (a key update).
func (k *trafficKey) next(s Suite) (*trafficKey, error) {
	var secret [secretLen]byte
	copy(secret[:], expand(k.secret[:], labelKeyUpdate, secretLen))
	return newTrafficKey(s, secret, k.gen+1)
}

// nonce writes the AEAD nonce of packet number pn into n: the IV XOR the
// packet number left-padded to 12 bytes (RFC 9001 §5.3). Distinct packet
// numbers give distinct nonces under one key, which is all the AEADs need.
func (k *trafficKey) nonce(n *[ivLen]byte, pn uint64) {
	*n = k.iv
	for i := 0; i < 8; i++ {
		n[ivLen-1-i] ^= byte(pn >> (8 * i))
	}
}

package proto

// FNV-1a, 32-bit (FNV's offset basis and prime).
const (
	fnvOffset32 uint32 = 2166136261
	fnvPrime32  uint32 = 16777619
)

// MethodID returns the method id of a full method name "pkg.Service/Method":
// its 32-bit FNV-1a hash. It does not allocate, so it can run per call, but
// a runtime would compute ids once at registration.
//
// A name whose hash is 0 cannot be served, since 0 marks PING and PONG;
// registries should reject it (no ordinary name is known to hash to 0).
func MethodID(fullName string) uint32 {
	h := fnvOffset32
	for i := 0; i < len(fullName); i++ {
		h ^= uint32(fullName[i])
		h *= fnvPrime32
	}
	return h
}

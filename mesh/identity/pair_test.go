package identity

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/zerohop/zerohop/proto"
)

var (
	clientAddr = netip.MustParseAddr("10.0.0.2")
	serverAddr = netip.MustParseAddrPort("10.0.0.1:7000")
	clientSPI  = spiffeid.RequireFromString("spiffe://test.zerohop/ns/shop/sa/web")
	serverSPI  = spiffeid.RequireFromString("spiffe://test.zerohop/ns/shop/sa/kv")
)

// pair is a client and a server session with the keys a handshake would
// have agreed, without the TLS part: for the data-path tests.
type pair struct {
	ct, st *Table
	c, s   *Session
}

func newPair(t testing.TB, suite Suite, cfg TableConfig) *pair {
	t.Helper()
	ct, err := NewTable(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewTable(cfg)
	if err != nil {
		t.Fatal(err)
	}
	master := make([]byte, secretLen)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	cid, err := ct.reserve()
	if err != nil {
		t.Fatal(err)
	}
	sid, err := st.reserve()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	exp := now.Add(time.Hour)
	c, err := ct.establish(sessionParams{role: RoleClient, suite: suite, master: master, localID: cid, remoteID: sid,
		peerAddr: serverAddr.Addr(), server: serverAddr, peerID: serverSPI, expires: exp, now: now})
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.establish(sessionParams{role: RoleServer, suite: suite, master: master, localID: sid, remoteID: cid,
		peerAddr: clientAddr, peerID: clientSPI, expires: exp, now: now})
	if err != nil {
		t.Fatal(err)
	}
	return &pair{ct: ct, st: st, c: c, s: s}
}

var netipAddrPort = netip.AddrPortFrom(clientAddr, 5555)

var suites = []Suite{SuiteAES128GCM, SuiteChaCha20Poly1305}

// request encodes a request with payload into a buffer with room to seal
// in place, returning the buffer and the frame's bounds.
func request(t testing.TB, id uint64, x *proto.ExtBuilder, payload []byte) (buf []byte, start, end int) {
	t.Helper()
	buf = make([]byte, proto.SealedPrefixLen+proto.HeaderLen+2+proto.MaxExtBlockLen+len(payload)+proto.SealedTagLen)
	var f proto.Frame
	var err error
	if x != nil {
		f, err = proto.EncodeRequestExt(buf[proto.SealedPrefixLen:], id, proto.MethodID("kv.Store/Get"), 0, x, payload)
	} else {
		f, err = proto.EncodeRequest(buf[proto.SealedPrefixLen:], id, proto.MethodID("kv.Store/Get"), 0, payload)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf, proto.SealedPrefixLen, proto.SealedPrefixLen + len(f)
}

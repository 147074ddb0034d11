package identity

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// docSealedBlocks returns the bytes of each ```sealed dump of
// docs/protocol.md, checking the offset column.
func docSealedBlocks(t *testing.T) [][]byte {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	var cur []byte
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case line == "```sealed":
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, cur)
		case in && !strings.HasPrefix(line, "offset"):
			left, _, _ := strings.Cut(line, "|")
			tokens := strings.Fields(left)
			off, err := strconv.ParseUint(tokens[0], 16, 16)
			if err != nil || int(off) != len(cur) {
				t.Fatalf("line %q: offset %s, but %d bytes came before", line, tokens[0], len(cur))
			}
			b, err := hex.DecodeString(strings.Join(tokens[1:], ""))
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			cur = append(cur, b...)
		}
	}
	return blocks
}

// docExample seals the first request of docs/protocol.md under the
// example's fixed keys: exporter secret 00 01 … 1f, AES-128-GCM, the
// server's session id 0x00100001, packet number 0.
func docExample(t *testing.T) (sealed, plain []byte, st *Table) {
	master := make([]byte, 32)
	for i := range master {
		master[i] = byte(i)
	}
	ct, _ := NewTable(TableConfig{})
	st, _ = NewTable(TableConfig{})
	now := time.Now()
	const cid, sid = 0x00100001, 0x00100001
	c, err := ct.establish(sessionParams{role: RoleClient, suite: SuiteAES128GCM, master: master, localID: cid, remoteID: sid,
		peerAddr: serverAddr.Addr(), server: serverAddr, peerID: serverSPI, expires: now.Add(time.Hour), now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.establish(sessionParams{role: RoleServer, suite: SuiteAES128GCM, master: master, localID: sid, remoteID: cid,
		peerAddr: clientAddr, peerID: clientSPI, expires: now.Add(time.Hour), now: now}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	f, _ := proto.EncodeRequest(buf[proto.SealedPrefixLen:], 42, proto.MethodID("kv.Store/Get"), 0, []byte("\x0a\x07user:42"))
	plain = append([]byte{}, f...)
	out, err := ct.NewSealer().Seal(buf, proto.SealedPrefixLen, proto.SealedPrefixLen+len(f), c)
	if err != nil {
		t.Fatal(err)
	}
	return out, plain, st
}

// TestProtocolDocSealedExample keeps the sealed-frame dump of
// docs/protocol.md what Seal writes, and checks that it opens.
func TestProtocolDocSealedExample(t *testing.T) {
	sealed, plain, st := docExample(t)
	blocks := docSealedBlocks(t)
	if len(blocks) != 1 {
		t.Fatalf("%d sealed dumps in docs/protocol.md, want 1; Seal writes:\n%s", len(blocks), dump(sealed))
	}
	if !bytes.Equal(blocks[0], sealed) {
		t.Fatalf("dump\n%x\nSeal writes\n%s", blocks[0], dump(sealed))
	}
	got, _, err := st.NewSealer().Open(blocks[0], clientAddr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the dump opens to %x, %v", got, err)
	}
}

func dump(b []byte) string {
	var s strings.Builder
	for off := 0; off < len(b); off += 16 {
		end := min(off+16, len(b))
		fmt.Fprintf(&s, "%04x    % x\n", off, b[off:end])
	}
	return s.String()
}

package proto_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// docBlocks returns the bytes of each ```gwir block of docs/protocol.md,
// checking the offset column on the way.
func docBlocks(t *testing.T) [][]byte {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	var cur []byte
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case line == "```gwir":
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, cur)
		case in && !strings.HasPrefix(line, "offset"):
			left, _, ok := strings.Cut(line, "|")
			tokens := strings.Fields(left)
			if !ok || len(tokens) < 2 {
				t.Fatalf("bad dump line %q", line)
			}
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

// TestProtocolDocExamples keeps docs/protocol.md true: its hex dumps are
// what the encoders write, and its status table names the codes this
// package has.
func TestProtocolDocExamples(t *testing.T) {
	blocks := docBlocks(t)
	if len(blocks) != 3 {
		t.Fatalf("%d hex dumps in docs/protocol.md, want 3", len(blocks))
	}
	buf := make([]byte, 100)
	method := proto.MethodID("kv.Store/Get")
	req, _ := proto.EncodeRequest(buf, 42, method, 0, []byte("\x0a\x07user:42"))
	if !bytes.Equal(blocks[0], req) {
		t.Errorf("request dump\n%x\nencoder writes\n%x", blocks[0], []byte(req))
	}
	resp, _ := proto.EncodeResponse(buf, 42, method, proto.StatusOK, []byte("\x0a\x05alice\x10\x03"))
	if !bytes.Equal(blocks[1], resp) {
		t.Errorf("response dump\n%x\nencoder writes\n%x", blocks[1], []byte(resp))
	}
	bad := append([]byte{}, blocks[0]...)
	bad[5], bad[6] = 0, 16
	_, err := proto.Parse(bad)
	answer, err := proto.EncodeBadFrame(buf, bad, err)
	if err != nil || !bytes.Equal(blocks[2], answer) {
		t.Errorf("BAD_FRAME dump\n%x\nencoder writes\n%x (%v)", blocks[2], []byte(answer), err)
	}

	doc, _ := os.ReadFile("../docs/protocol.md")
	row := regexp.MustCompile(`(?m)^\| (\d+) \| ([A-Z_]+) \|`)
	n := 0
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		code, _ := strconv.Atoi(m[1])
		if got := proto.Status(code).String(); got != m[2] {
			t.Errorf("doc says status %d is %s, code says %s", code, m[2], got)
		}
		n++
	}
	if n != 9 {
		t.Errorf("%d status rows in the doc, want 9", n)
	}
}

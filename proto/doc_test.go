package proto_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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

// docSection returns the text of the "## title" section of the doc, up to
// the next section of the same level.
func docSection(t *testing.T, doc, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("no section %q in docs/protocol.md", title)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	return section
}

// TestProtocolDocExamples keeps docs/protocol.md true: its hex dumps are
// what the encoders write, and its status and tag tables name the codes
// this package has.
func TestProtocolDocExamples(t *testing.T) {
	blocks := docBlocks(t)
	if len(blocks) != 5 {
		t.Fatalf("%d hex dumps in docs/protocol.md, want 5", len(blocks))
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

	// The extension block: a client's request with DEADLINE, CALLER and
	// ATTEMPT, and a server's response sealed in front of its payload.
	var x proto.ExtBuilder
	x.SetDeadline(250 * time.Millisecond)
	x.SetCaller([]byte("web"))
	x.SetAttempt(1)
	extReq, err := proto.EncodeRequestExt(buf, 42, method, 0, &x, []byte("\x0a\x07user:42"))
	if err != nil || !bytes.Equal(blocks[3], extReq) {
		t.Errorf("EXT request dump\n%x\nencoder writes\n%x (%v)", blocks[3], []byte(extReq), err)
	}
	f, err := proto.Parse(blocks[3])
	if d, _ := f.Deadline(); err != nil || d != 250*time.Millisecond || string(f.Caller()) != "web" {
		t.Errorf("EXT request dump parses to deadline %v caller %q: %v", d, f.Caller(), err)
	}
	stripped, err := proto.StripExt(buf, blocks[3])
	if err != nil || !bytes.Equal(stripped, blocks[0]) {
		t.Errorf("EXT request without its block is\n%x\nnot the first dump (%v)", []byte(stripped), err)
	}
	tx := append(make([]byte, proto.ResponseHeadroom, 100), "\x0a\x05alice\x10\x03"...)
	x.Reset()
	x.SetServiceTime(18500 * time.Nanosecond)
	extResp, err := proto.SealExt(tx, proto.ResponseHeadroom, proto.Header{Kind: proto.KindResponse, RequestID: 42, MethodID: method}, &x)
	if err != nil || !bytes.Equal(blocks[4], extResp) {
		t.Errorf("EXT response dump\n%x\nSealExt writes\n%x (%v)", blocks[4], []byte(extResp), err)
	}

	raw, _ := os.ReadFile("../docs/protocol.md")
	doc := string(raw)
	tagRow := regexp.MustCompile(`(?m)^\| (\d+) \| ([A-Z_]+) \|`)
	tags := 0
	for _, m := range tagRow.FindAllStringSubmatch(docSection(t, doc, "The extension block"), -1) {
		tag, _ := strconv.Atoi(m[1])
		if got := proto.ExtTag(tag).String(); got != m[2] {
			t.Errorf("doc says tag %d is %s, code says %s", tag, m[2], got)
		}
		tags++
	}
	if tags != 7 {
		t.Errorf("%d tag rows in the doc, want 7", tags)
	}

	row := regexp.MustCompile(`(?m)^\| (\d+) \| ([A-Z_]+) \|`)
	n := 0
	for _, m := range row.FindAllStringSubmatch(docSection(t, doc, "Status codes"), -1) {
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

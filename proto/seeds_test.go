package proto_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// readSeeds reads the values of every seed file of a fuzz target's corpus
// (bool, uint16 and []byte lines, each with a trailing comment).
func readSeeds(t *testing.T, target string) map[string][]any {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seed corpus for %s: %v", target, err)
	}
	seeds := map[string][]any{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: header %q", p, lines[0])
		}
		var vals []any
		for _, line := range lines[1:] {
			if !strings.Contains(line, " // ") {
				t.Errorf("%s: line without a comment: %q", p, line)
			}
			switch {
			case strings.HasPrefix(line, "bool("):
				vals = append(vals, strings.HasPrefix(line, "bool(true)"))
			case strings.HasPrefix(line, "uint16("):
				n, err := strconv.Atoi(line[len("uint16("):strings.Index(line, ")")])
				if err != nil {
					t.Fatalf("%s: %q", p, line)
				}
				vals = append(vals, uint16(n))
			case strings.HasPrefix(line, "[]byte("):
				q, err := strconv.QuotedPrefix(line[len("[]byte("):])
				if err != nil {
					t.Fatalf("%s: %q: %v", p, line, err)
				}
				s, _ := strconv.Unquote(q)
				vals = append(vals, []byte(s))
			default:
				t.Fatalf("%s: unknown line %q", p, line)
			}
		}
		seeds[filepath.Base(p)] = vals
	}
	return seeds
}

// TestFuzzSeedsCoverRules keeps the seed corpora honest: FuzzExt's seeds
// include an accepted block and each BAD_FRAME reason of the block on a
// REQUEST, and a dropped RESPONSE; FuzzStream's seeds include each sticky
// error, a stream that goes on after a BAD_FRAME and after a drop, and a
// stream that ends inside a frame.
func TestFuzzSeedsCoverRules(t *testing.T) {
	seen := map[string]bool{}
	for name, v := range readSeeds(t, "FuzzExt") {
		response, oneway, body := v[0].(bool), v[1].(bool), v[2].([]byte)
		kind, flags := kindReq, flagExt
		if response {
			kind = kindResp
		}
		if oneway {
			flags |= 1
		}
		_, err := proto.Parse(refFrame(kind, flags, 1, 9, 0, body))
		switch {
		case err == nil:
			seen["accept "+proto.Kind(kind).String()] = true
		case errors.Is(err, proto.ErrDrop) && response:
			seen["drop RESPONSE"] = true
		case errors.Is(err, proto.ErrBadFrame) && !response:
			seen[err.(proto.Error).Reason().Error()] = true
		default:
			t.Errorf("seed %s: %v", name, err)
		}
	}
	for _, want := range []string{"accept REQUEST", "accept RESPONSE", "drop RESPONSE",
		proto.ErrExtLen.Error(), proto.ErrExtEntries.Error(), proto.ErrExtRepeated.Error(), proto.ErrExtSize.Error()} {
		if !seen[want] {
			t.Errorf("no FuzzExt seed gives %q", want)
		}
	}

	seen = map[string]bool{}
	for _, v := range readSeeds(t, "FuzzStream") {
		data, bufSize := v[0].([]byte), v[2].(uint16)
		events, rest := refStream(data, proto.HeaderLen+int(bufSize)%1024)
		for i, e := range events {
			switch {
			case stickyErr(e.err):
				seen[e.err.Error()] = true
			case e.err != nil && i+1 < len(events) && errors.Is(e.err, proto.ErrBadFrame):
				seen["continues after BAD_FRAME"] = true
			case e.err != nil && i+1 < len(events) && errors.Is(e.err, proto.ErrDrop):
				seen["continues after drop"] = true
			case e.err == nil && proto.Frame(e.frame).HasExt():
				seen["EXT frame"] = true
			}
		}
		if rest > 0 {
			seen["ends inside a frame"] = true
		}
	}
	for _, want := range []string{proto.ErrMagic.Error(), proto.ErrVersion.Error(), proto.ErrFrameTooLarge.Error(),
		"continues after BAD_FRAME", "continues after drop", "EXT frame", "ends inside a frame"} {
		if !seen[want] {
			t.Errorf("no FuzzStream seed gives %q", want)
		}
	}
}

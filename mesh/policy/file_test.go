package policy_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/authz"
	"github.com/zerohop/zerohop/mesh/policy/ratelimit"
)

var echoMethods = []string{echo.EchoMethod, echo.SumMethod}

func TestParseDocument(t *testing.T) {
	doc, err := policy.ReadDocument("testdata/server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Authz.Rules) != 2 || doc.Authz.Default != authz.Allow || doc.Authz.Rules[0].Line != 4 {
		t.Fatalf("rules %+v", doc.Authz)
	}
	want := []ratelimit.Rule{
		{Name: "echo", Method: echo.EchoMethod, Rate: 1000, Burst: 100},
		{Name: "web-sum", Method: "zerohop.Echo/*", Caller: "web", Source: netip.MustParsePrefix("10.0.0.0/8"),
			Rate: 50.5, Burst: 10, Shared: true, Shadow: true},
	}
	if !reflect.DeepEqual(doc.Limits, want) || !reflect.DeepEqual(doc.LimitLines, []int{16, 21}) {
		t.Fatalf("limits %+v at lines %v", doc.Limits, doc.LimitLines)
	}
	// The marshalled document reads back the same.
	out, err := policy.MarshalDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	back, err := policy.ParseDocument("again", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if a, b := fmt.Sprint(stripLines(doc)), fmt.Sprint(stripLines(back)); a != b {
		t.Fatalf("round trip:\n%s\n%s", a, b)
	}
}

// Every malformed file is refused with an error naming its line, and the
// policy in force stays.
func TestMalformedFilesNameTheLineAndKeepThePolicy(t *testing.T) {
	pol := newPolicy(t, policy.ServerConfig{Loops: 1, Methods: echoMethods})
	good := "rules:\n  - name: lab\n    action: deny\n    sources: [10.9.0.0/16]\nlimits:\n  - method: zerohop.Echo/Echo\n    rate: 10\n    burst: 1\n"
	if _, err := pol.Load(mustParse(t, good), "good"); err != nil {
		t.Fatal(err)
	}
	before := pol.Document()
	cases := []struct{ name, text, line, want string }{
		{"yaml syntax", "rules:\n  - name: a\n    action: deny\n    sources: [10.0.0.0/8\n", ":4:", "YAML"},
		{"unknown top key", "rules: []\nlimts: []\n", ":2:", `unknown key "limts"`},
		{"rule without action", "rules:\n  - name: a\n    sources: [10.0.0.0/8]\n", ":2:", "no action"},
		{"bad prefix", "rules:\n  - action: deny\n    sources: [10.0.0.1/8]\n", ":3:", "host bits"},
		{"limit rate", "limits:\n  - method: a.B/C\n    rate: -3\n    burst: 1\n", ":3:", "rate"},
		{"limit without burst", "limits:\n  - method: a.B/C\n    rate: 3\n", ":2:", "no burst"},
		{"limit unknown key", "limits:\n  - method: a.B/C\n    rate: 3\n    burst: 1\n    brust: 2\n", ":5:", `unknown key "brust"`},
		{"limit shadow", "limits:\n  - rate: 3\n    burst: 1\n    shadow: maybe\n", ":4:", "true or false"},
		{"limits not a list", "limits: 5\n", ":1:", "want a list"},
		{"duplicate limit names", "limits:\n  - {name: a, rate: 1, burst: 1}\n  - {name: a, rate: 1, burst: 1}\n", ":3:", "already used"},
		{"rules twice", "rules: []\nrules: []\n", ":2:", "given twice"},
	}
	for _, c := range cases {
		path := tempPolicy(t, c.text)
		_, err := pol.LoadFile(path)
		var fe *authz.FileError
		if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), path+c.line) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want a FileError at %s saying %q", c.name, err, c.line, c.want)
		}
		if got := pol.Document(); !reflect.DeepEqual(got, before) {
			t.Errorf("%s: the policy in force changed to %+v", c.name, got)
		}
	}
}

func TestEmptyPolicyIsAllowedAndSaysSo(t *testing.T) {
	pol := newPolicy(t, policy.ServerConfig{Loops: 1, Methods: echoMethods})
	for _, text := range []string{"", "# only a comment\n", "rules: []\nlimits: []\n", "{}\n"} {
		rep, err := pol.LoadFile(tempPolicy(t, text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if !rep.Empty || !strings.Contains(rep.String(), "empty policy") {
			t.Errorf("%q: report %q, want it to say the policy is empty", text, rep)
		}
	}
}

// Globs that match no method the server serves are reported at load: the
// rule or limit is accepted (the method may be registered later) but the
// report says it covers nothing now.
func TestUnknownMethodGlobsAreReported(t *testing.T) {
	pol := newPolicy(t, policy.ServerConfig{Loops: 1, Methods: echoMethods})
	rep, err := pol.Load(mustParse(t, `rules:
  - name: typo
    action: deny
    services: [zerohop.Ecoh]
  - name: method-typo
    action: deny
    services: [zerohop.Echo]
    methods: [Smu]
limits:
  - name: nothing
    method: "shop.*"
    rate: 1
    burst: 1
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(rep.Warnings, "\n")
	for _, want := range []string{`"zerohop.Ecoh" matches no known service`, `"Smu" matches no known method`, `"nothing"`} {
		if !strings.Contains(text, want) {
			t.Errorf("warnings %q lack %q", text, want)
		}
	}
	if len(rep.Warnings) != 3 {
		t.Errorf("%d warnings, want 3: %q", len(rep.Warnings), rep.Warnings)
	}
}

// FuzzParseDocument: ParseDocument never panics, every error names a line,
// and an accepted document survives MarshalDocument and ParseDocument
// unchanged (the YAML library's encoder is the reference), and compiles.
func FuzzParseDocument(f *testing.F) {
	for _, name := range []string{"testdata/server.yaml", "authz/testdata/shop.yaml", "authz/testdata/policy.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("limits:\n  - {rate: 1e9, burst: 1, source: 10.1.2.3}\n"))
	f.Add([]byte("limits:\n  - rate: 0x10\n    burst: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := policy.ParseDocument("fuzz", data)
		if err != nil {
			if fe, ok := err.(*authz.FileError); !ok || fe.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		out, err := policy.MarshalDocument(doc)
		if err != nil {
			t.Fatalf("MarshalDocument: %v", err)
		}
		back, err := policy.ParseDocument("again", out)
		if err != nil {
			t.Fatalf("ParseDocument(MarshalDocument(doc)): %v\n%s", err, out)
		}
		if a, b := fmt.Sprint(stripLines(doc)), fmt.Sprint(stripLines(back)); a != b {
			t.Fatalf("round trip changed the document:\n%s\n%s", a, b)
		}
		pol, err := policy.NewServer(policy.ServerConfig{Loops: 1, Methods: echoMethods, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pol.Load(doc, "fuzz"); err != nil {
			t.Fatalf("ParseDocument accepted what Load refuses: %v", err)
		}
	})
}

func stripLines(d policy.Document) policy.Document {
	d.LimitLines = nil
	rules := make([]authz.Rule, len(d.Authz.Rules))
	for i, r := range d.Authz.Rules {
		r.Line = 0
		rules[i] = r
	}
	d.Authz.Rules = rules
	return d
}

package authz

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

var shopMethods = []string{
	"shop.Cart/Get", "shop.Cart/GetAll", "shop.Cart/Put", "shop.Cart/PutMany", "shop.Cart/Delete",
	"shop.Pay/Charge", "shop.Pay/GetReceipt", "admin.Ops/Drain",
}

func mustShop(t testing.TB, loops int) *Policy {
	t.Helper()
	spec, err := ParseFile("testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(spec, shopMethods, loops)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestMatchFirstMatch(t *testing.T) {
	p := mustShop(t, 2)
	cases := []struct {
		method, peer, caller, identity string
		allow                          bool
		rule                           int
		msg                            string
	}{
		{"shop.Cart/Put", "10.9.1.1", "", "", false, 0, "the lab network may only read carts"},
		{"shop.Cart/PutMany", "::ffff:10.9.1.1", "", "", false, 0, "the lab network may only read carts"},
		{"shop.Cart/Delete", "fd00:9::1", "", "", false, 0, "the lab network may only read carts"},
		// the lab rule comes first, even for billing
		{"shop.Cart/Put", "10.9.1.1", "billing", "spiffe://shop.example/ns/prod/sa/billing", false, 0, "the lab network may only read carts"},
		{"shop.Cart/Get", "10.9.1.1", "", "", true, 2, ""},
		{"shop.Cart/Put", "10.1.1.1", "", "", true, 2, ""},
		{"shop.Cart/PutMany", "10.1.1.1", "", "", false, -1, "denied by the default policy: no rule allows this call"},
		{"shop.Cart/PutMany", "10.1.1.1", "billing", "spiffe://shop.example/ns/prod/sa/billing", true, 1, ""},
		// billing needs both its caller name and its identity
		{"shop.Cart/PutMany", "10.1.1.1", "billing", "spiffe://shop.example/ns/prod/sa/web", false, -1, "denied by the default policy: no rule allows this call"},
		{"shop.Cart/PutMany", "10.1.1.1", "web", "spiffe://shop.example/ns/prod/sa/billing", false, -1, "denied by the default policy: no rule allows this call"},
		{"admin.Ops/Drain", "10.1.1.1", "", "", false, -1, "denied by the default policy: no rule allows this call"},
		{"shop.Pay/Charge", "192.0.2.7", "", "", true, 3, ""},
		{"shop.Pay/Charge", "192.0.2.8", "", "", false, -1, "denied by the default policy: no rule allows this call"},
		{"shop.Pay/GetReceipt", "fd00:1::1", "", "", true, 2, ""},
		{"shop.Pay/GetReceipt", "2001:db8::1", "", "", false, -1, "denied by the default policy: no rule allows this call"},
	}
	for _, c := range cases {
		var caller, identity []byte
		if c.caller != "" {
			caller = []byte(c.caller)
		}
		if c.identity != "" {
			identity = []byte(c.identity)
		}
		for _, byName := range []bool{false, true} {
			var allow bool
			var rule int
			var msg string
			if byName {
				allow, rule, msg = p.MatchName(1, c.method, addr(c.peer), caller, identity)
			} else {
				allow, rule, msg = p.Match(0, proto.MethodID(c.method), addr(c.peer), caller, identity)
			}
			if allow != c.allow || rule != c.rule || msg != c.msg {
				t.Errorf("%s from %s caller %q id %q (by name %v) = %v, %d, %q; want %v, %d, %q",
					c.method, c.peer, c.caller, c.identity, byName, allow, rule, msg, c.allow, c.rule, c.msg)
			}
		}
	}
	hits := p.Hits()
	want := []uint64{2 * 4, 2 * 1, 2 * 3, 2 * 1, 2 * 6} // each case twice: by id and by name
	if !reflect.DeepEqual(hits, want) {
		t.Fatalf("Hits() = %v, want %v", hits, want)
	}
	if p.RuleName(0) != "lab-readonly" || p.RuleName(-1) != "default" {
		t.Fatal("RuleName")
	}
}

// A method the table does not know meets only the rules that name no
// method, by id; by name every rule's globs apply.
func TestUnknownMethods(t *testing.T) {
	spec := Spec{Default: Allow, Rules: []Rule{
		{Action: Deny, Sources: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, Services: []string{"shop.*"}},
		{Action: Deny, Sources: []netip.Prefix{netip.MustParsePrefix("10.8.0.0/16")}},
	}}
	p, err := Compile(spec, []string{"shop.Cart/Get"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	id := proto.MethodID("shop.New/Thing")
	if allow, rule, _ := p.Match(0, id, addr("10.9.0.1"), nil, nil); !allow || rule != -1 {
		t.Errorf("unknown id from the first rule's source: %v, %d; want the default", allow, rule)
	}
	if allow, rule, _ := p.Match(0, id, addr("10.8.0.1"), nil, nil); allow || rule != 1 {
		t.Errorf("unknown id from the any-method rule's source: %v, %d", allow, rule)
	}
	if allow, rule, _ := p.MatchName(0, "shop.New/Thing", addr("10.9.0.1"), nil, nil); allow || rule != 0 {
		t.Errorf("unknown name from the first rule's source: %v, %d", allow, rule)
	}
}

// A rule on identities needs an authenticated identity: "*" matches any
// SPIFFE ID but not a call without one (an unsealed call).
func TestIdentityRulesNeedAnIdentity(t *testing.T) {
	spec := Spec{Default: Deny, Rules: []Rule{{Action: Allow, Identities: []string{"*"}}}}
	p, err := Compile(spec, []string{"shop.Cart/Get"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	id := proto.MethodID("shop.Cart/Get")
	if allow, rule, _ := p.Match(0, id, addr("10.0.0.1"), nil, []byte("spiffe://td/ns/a/sa/b")); !allow || rule != 0 {
		t.Errorf("with an identity: %v, rule %d; want allowed by rule 0", allow, rule)
	}
	for _, none := range [][]byte{nil, {}} {
		if allow, rule, _ := p.Match(0, id, addr("10.0.0.1"), nil, none); allow || rule != -1 {
			t.Errorf("without an identity (%q): %v, rule %d; want the default deny", none, allow, rule)
		}
	}
}

func TestParseFile(t *testing.T) {
	spec, err := ParseFile("testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pf := netip.MustParsePrefix
	want := Spec{Default: Deny, Rules: []Rule{
		{Name: "lab-readonly", Action: Deny, Sources: []netip.Prefix{pf("10.9.0.0/16"), pf("fd00:9::/32")},
			Services: []string{"shop.Cart"}, Methods: []string{"Put*", "Delete"}, Message: "the lab network may only read carts", Line: 5},
		{Name: "billing", Action: Allow, Callers: []string{"billing"}, Identities: []string{"spiffe://shop.example/ns/*/sa/billing"}, Line: 12},
		{Name: "mesh", Action: Allow, Sources: []netip.Prefix{pf("10.0.0.0/8"), pf("fd00::/8")},
			Services: []string{"shop.*"}, Methods: []string{"Get*", "Put"}, Line: 17},
		{Name: "pay-probe", Action: Allow, Sources: []netip.Prefix{pf("192.0.2.7/32")}, Services: []string{"shop.Pay"}, Line: 23},
	}}
	if !reflect.DeepEqual(spec, want) {
		t.Fatalf("ParseFile:\n got %+v\nwant %+v", spec, want)
	}
	js, err := ParseFile("testdata/policy.json")
	if err != nil || js.Default != Allow || len(js.Rules) != 1 || js.Rules[0].Sources[0] != pf("203.0.113.0/24") {
		t.Fatalf("JSON policy: %+v, %v", js, err)
	}
	// Marshal writes what Parse reads back.
	data, err := Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("marshalled", data)
	if err != nil {
		t.Fatalf("parsing Marshal's output: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(withoutLines(back), withoutLines(spec)) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, spec)
	}
}

func withoutLines(s Spec) Spec {
	s.Rules = append([]Rule(nil), s.Rules...)
	for i := range s.Rules {
		s.Rules[i].Line = 0
	}
	return s
}

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		want       string
	}{
		{"syntax", "rules:\n  - action: deny\n   sources: [10.0.0.0/8]\n", 3, ""},
		{"unclosed list", "rules:\n  - action: deny\n    sources: [10.0.0.0/8\n", 3, "did not find expected"},
		{"tab", "rules:\n\t- action: deny\n", 2, "cannot start any token"},
		{"unknown top key", "default: allow\nrule:\n  - action: deny\n", 2, `unknown key "rule"`},
		{"unknown rule key", "rules:\n  - action: deny\n    source: 10.0.0.0/8\n", 3, `unknown key "source"`},
		{"bad prefix", "rules:\n  - action: deny\n    sources:\n      - 10.0.0.0/8\n      - 10.0.0/8\n", 5, `"10.0.0/8" is not a prefix`},
		{"host bits", "rules:\n  - action: deny\n    sources: [10.1.2.3/8]\n", 3, "did you mean 10.0.0.0/8"},
		{"no action", "rules:\n  - name: x\n    sources: [10.0.0.0/8]\n", 2, `rule 1 ("x"): no action`},
		{"bad action", "rules:\n  - action: permit\n", 2, `action "permit": want allow or deny`},
		{"bad default", "default: maybe\n", 1, "default:"},
		{"twice", "rules:\n  - action: deny\n    action: allow\n", 3, `key "action" given twice`},
		{"list of maps", "rules:\n  - action: deny\n    callers:\n      - {a: b}\n", 4, "callers: want a list of strings"},
		{"glob with space", "rules:\n  - action: deny\n    methods: [\"Get *\"]\n", 2, "methods:"},
		{"method with slash", "rules:\n  - action: deny\n    methods: [shop.Cart/Get]\n", 2, "give the method part alone"},
		{"rules not a list", "rules: deny\n", 1, "rules: want a list"},
		{"not a mapping", "- action: deny\n", 1, "must be a mapping"},
		{"two documents", "rules: []\n---\nrules: []\n", 2, "second YAML document"},
		{"rule 2", "rules:\n  - action: allow\n  - action: deny\n    sources: [300.0.0.0/8]\n", 4, "rule 2:"},
	}
	for _, c := range cases {
		_, err := Parse("p.yaml", []byte(c.text))
		fe, ok := err.(*FileError)
		if !ok {
			t.Errorf("%s: Parse = %v, want a *FileError", c.name, err)
			continue
		}
		if c.line > 0 && fe.Line != c.line {
			t.Errorf("%s: error at line %d, want %d: %v", c.name, fe.Line, c.line, err)
		}
		if fe.Line == 0 {
			t.Errorf("%s: error names no line: %v", c.name, err)
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "authz: p.yaml:") {
			t.Errorf("%s: %q does not name the file and say %q", c.name, err, c.want)
		}
	}
	// A duplicate name is caught at compile time, naming both lines.
	spec, err := Parse("p.yaml", []byte("rules:\n  - name: a\n    action: deny\n  - name: a\n    action: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(spec, nil, 1); err == nil || !strings.Contains(err.Error(), "rule 2 (\"a\") at line 4: name \"a\" is already used by rule 1 at line 2") {
		t.Fatalf("duplicate names: %v", err)
	}
}

func TestEmptyPolicies(t *testing.T) {
	for _, text := range []string{"", "# nothing yet\n", "rules: []\n", "rules:\n", "default: allow\n"} {
		spec, err := Parse("empty.yaml", []byte(text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		p, err := Compile(spec, shopMethods, 1)
		if err != nil {
			t.Fatal(err)
		}
		rep := p.Report()
		if !rep.Empty || rep.Default != Allow || !strings.HasPrefix(rep.String(), "empty policy: no rules, every call gets the default action (allow)") {
			t.Fatalf("%q: report %+v %q", text, rep, rep)
		}
		if allow, rule, _ := p.Match(0, proto.MethodID("shop.Cart/Get"), addr("10.0.0.1"), nil, nil); !allow || rule != -1 {
			t.Fatalf("%q: empty policy denied a call", text)
		}
	}
	spec, _ := Parse("deny.yaml", []byte("default: deny\n"))
	p, _ := Compile(spec, shopMethods, 1)
	if rep := p.Report(); !rep.Empty || rep.Default != Deny || !strings.Contains(rep.String(), "(deny)") {
		t.Fatalf("deny-all report %q", rep)
	}
}

func TestUnmatchedGlobsAreReported(t *testing.T) {
	spec, err := Parse("p.yaml", []byte(`rules:
  - name: typo
    action: deny
    services: [shop.Crat]
  - name: good
    action: allow
    services: ["shop.*"]
    methods: [Get, Gte*]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(spec, shopMethods, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := p.Report().Warnings
	want := []string{
		`rule 1 ("typo") at line 2: service "shop.Crat" matches no known service`,
		`rule 2 ("good") at line 5: method "Gte*" matches no known method of its services`,
	}
	if !reflect.DeepEqual(w, want) {
		t.Fatalf("warnings %q, want %q", w, want)
	}
	if !strings.Contains(p.Report().String(), "warning: rule 1") {
		t.Fatalf("report %q", p.Report())
	}
}

func TestEngineKeepsOldPolicyOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	e, err := NewEngine(1, shopMethods)
	if err != nil {
		t.Fatal(err)
	}
	id := proto.MethodID("shop.Cart/Get")
	if allow, _, _ := e.Match(0, id, addr("10.0.0.1"), nil, nil); !allow {
		t.Fatal("a new engine denies")
	}
	os.WriteFile(path, []byte("default: deny\n"), 0o600)
	if rep, err := e.LoadFile(path); err != nil || rep.Default != Deny {
		t.Fatalf("LoadFile: %+v, %v", rep, err)
	}
	old := e.Policy()
	os.WriteFile(path, []byte("default: deny\nrules:\n  - action: allow\n    sources: [10.0.0/8]\n"), 0o600)
	if _, err := e.LoadFile(path); err == nil || !strings.Contains(err.Error(), "policy.yaml:4:") {
		t.Fatalf("malformed file: %v", err)
	}
	if e.Policy() != old {
		t.Fatal("a malformed file replaced the policy")
	}
	if _, err := e.LoadFile(filepath.Join(dir, "missing.yaml")); err == nil || e.Policy() != old {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := e.Load(Spec{Rules: []Rule{{Action: 9}}}); err == nil || e.Policy() != old {
		t.Fatalf("bad spec: %v", err)
	}
}

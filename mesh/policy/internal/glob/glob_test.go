package glob

import (
	"path"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"shop.Cart", "shop.Cart", true},
		{"shop.Cart", "shop.Carts", false},
		{"*", "", true},
		{"*", "anything/at all", true},
		{"shop.*", "shop.Cart", true},
		{"shop.*", "shopx.Cart", false},
		{"Get*", "Get", true},
		{"Get*", "GetItem", true},
		{"Get*", "Put", false},
		{"*Item", "GetItem", true},
		{"*Item", "GetItems", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "acb", false},
		{"a*ab", "aab", true},
		{"a*ab*ab", "aabab", true},
		{"a*ab*ab", "aab", false},
		{"**x", "x", true},
		{"spiffe://td/ns/*/sa/web", "spiffe://td/ns/prod/sa/web", true},
		{"spiffe://td/ns/*/sa/web", "spiffe://td/ns/prod/sa/db", false},
	}
	for _, c := range cases {
		g := MustCompile(c.pattern)
		if got := g.Match(c.name); got != c.want {
			t.Errorf("%q.Match(%q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
		if got := g.MatchBytes([]byte(c.name)); got != c.want {
			t.Errorf("%q.MatchBytes(%q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	if (Glob{}).Match("") {
		t.Error("the zero Glob matched")
	}
	for _, bad := range []string{"", "a b", "a\tb", "x\x00"} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("Compile(%q) succeeded", bad)
		}
	}
	if !MustCompile("*").Any() || MustCompile("a*").Any() || !MustCompile("ab").Literal() {
		t.Error("Any/Literal wrong")
	}
}

// FuzzMatch checks Match against path.Match, which treats '*' the same way
// for names without '/', '?', '[' and '\\'.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"a*b", "aXb"}, {"*", ""}, {"a*ab*ab", "aabab"}, {"Get*", "GetItem"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if strings.ContainsAny(pattern+name, "/?[]\\") {
			return
		}
		g, err := Compile(pattern)
		if err != nil {
			return
		}
		want, err := path.Match(pattern, name)
		if err != nil {
			return
		}
		if got := g.Match(name); got != want {
			t.Fatalf("%q.Match(%q) = %v, path.Match says %v", pattern, name, got, want)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	g := MustCompile("shop.*/Get*Item")
	name := []byte("shop.Cart/GetBigItem")
	b.ReportAllocs()
	for b.Loop() {
		if !g.MatchBytes(name) {
			b.Fatal("no match")
		}
	}
}

package glob

import (
	"fmt"
	"strings"
)

// Glob is a compiled pattern. The zero value matches nothing.
type Glob struct {
	pattern string
	// The pattern split at its stars: prefix * mid[0] * ... * suffix.
	prefix, suffix string
	mid            []string
	star           bool // the pattern has at least one '*'
	valid          bool
}

// Compile compiles pattern. Every byte other than '*' matches itself;
// consecutive stars act as one. Control characters and spaces are refused
// so that a typo in a policy file is caught at load time.
func Compile(pattern string) (Glob, error) {
	if pattern == "" {
		return Glob{}, fmt.Errorf("empty pattern")
	}
	for i := 0; i < len(pattern); i++ {
		if c := pattern[i]; c <= ' ' || c == 0x7f {
			return Glob{}, fmt.Errorf("pattern %q: character %q at %d is not allowed", pattern, c, i)
		}
	}
	g := Glob{pattern: pattern, valid: true}
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		g.prefix = pattern
		return g, nil
	}
	g.star = true
	g.prefix, g.suffix = parts[0], parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		if p != "" {
			g.mid = append(g.mid, p)
		}
	}
	return g, nil
}

// MustCompile is Compile for patterns known to be valid (tests, constants).
func MustCompile(pattern string) Glob {
	g, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the pattern as written.
func (g Glob) String() string { return g.pattern }

// Any reports whether the pattern matches every name ("*").
func (g Glob) Any() bool {
	return g.valid && g.star && g.prefix == "" && g.suffix == "" && len(g.mid) == 0
}

// Literal reports whether the pattern has no star (it matches one name).
func (g Glob) Literal() bool { return g.valid && !g.star }

// Match reports whether name matches the pattern.
func (g Glob) Match(name string) bool {
	if !g.valid {
		return false
	}
	if !g.star {
		return name == g.prefix
	}
	if len(name) < len(g.prefix)+len(g.suffix) ||
		name[:len(g.prefix)] != g.prefix || name[len(name)-len(g.suffix):] != g.suffix {
		return false
	}
	// Greedy leftmost placement of the middle parts is optimal: placing a
	// part further left never leaves less room for the parts after it.
	rest := name[len(g.prefix) : len(name)-len(g.suffix)]
	for _, m := range g.mid {
		i := strings.Index(rest, m)
		if i < 0 {
			return false
		}
		rest = rest[i+len(m):]
	}
	return true
}

// MatchBytes is Match for a byte slice; it does not allocate.
func (g Glob) MatchBytes(name []byte) bool {
	// The conversion does not escape and Match only reads it, so the
	// compiler passes the bytes without copying.
	return g.Match(unsafeString(name))
}

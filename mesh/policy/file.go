package policy

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/zerohop/zerohop/mesh/policy/authz"
	"github.com/zerohop/zerohop/mesh/policy/internal/glob"
	"github.com/zerohop/zerohop/mesh/policy/ratelimit"
)

// Document is a server's policy file: authorization rules (authz's
// format: "default" and "rules") and rate limits ("limits").
type Document struct {
	Authz  authz.Spec
	Limits []ratelimit.Rule
	// LimitLines is where each limit starts in its file (0: not from a
	// file), for messages.
	LimitLines []int
}

// Empty reports whether the document holds no rule and no limit.
func (d Document) Empty() bool { return len(d.Authz.Rules) == 0 && len(d.Limits) == 0 }

const limitFormat = `limits:
  - name: cart-writes          # optional, names the limit in stats
    method: "shop.Cart/Put*"   # glob over "pkg.Service/Method"; absent: every method
    caller: web                # optional: only calls whose CALLER tag is this
    source: 10.0.0.0/8         # optional: only calls from this prefix
    rate: 1000                 # calls per second (0.001 to 1e9)
    burst: 100                 # calls at once after an idle period (≥ 1)
    shared: false              # one bucket for every method it covers
    shadow: false              # count what it would refuse, refuse nothing`

// FileFormat returns an annotated example of the whole file format.
func FileFormat() string { return authz.FileFormat() + "\n" + limitFormat }

// ParseDocument reads a policy file from YAML (or JSON) data; name labels
// errors. Every error is an *authz.FileError naming the line. An empty
// file (or one of comments only) is the empty policy.
func ParseDocument(name string, data []byte) (Document, error) {
	var doc Document
	spec, err := authz.ParseSections(name, data, authz.Section{Key: "limits", Parse: func(file string, v *yaml.Node) error {
		limits, lines, err := parseLimits(file, v)
		doc.Limits, doc.LimitLines = limits, lines
		return err
	}})
	if err != nil {
		return Document{}, err
	}
	doc.Authz = spec
	return doc, nil
}

// ReadDocument reads and parses the policy file at path.
func ReadDocument(path string) (Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Document{}, &authz.FileError{File: path, Msg: "reading the policy: " + err.Error(), Err: err}
	}
	return ParseDocument(path, data)
}

func parseLimits(file string, v *yaml.Node) ([]ratelimit.Rule, []int, error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil, nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, nil, authz.NodeError(file, v, "limits: want a list of limits; the format is:\n%s", limitFormat)
	}
	var out []ratelimit.Rule
	var lines []int
	names := map[string]int{}
	for i, n := range v.Content {
		r, err := parseLimit(file, i, n)
		if err != nil {
			return nil, nil, err
		}
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				return nil, nil, authz.NodeError(file, n, "limit %d: name %q is already used by limit %d at line %d", i+1, r.Name, j+1, lines[j])
			}
			names[r.Name] = i
		}
		out = append(out, r)
		lines = append(lines, n.Line)
	}
	return out, lines, nil
}

func parseLimit(file string, i int, n *yaml.Node) (ratelimit.Rule, error) {
	var r ratelimit.Rule
	label := func() string {
		if r.Name != "" {
			return fmt.Sprintf("limit %d (%q)", i+1, r.Name)
		}
		return fmt.Sprintf("limit %d", i+1)
	}
	fail := func(at *yaml.Node, format string, args ...any) (ratelimit.Rule, error) {
		return ratelimit.Rule{}, authz.NodeError(file, at, "%s: %s", label(), fmt.Sprintf(format, args...))
	}
	if n.Kind != yaml.MappingNode {
		return fail(n, "want a mapping with rate and burst")
	}
	for k := 0; k+1 < len(n.Content); k += 2 {
		if n.Content[k].Value == "name" && n.Content[k+1].Kind == yaml.ScalarNode {
			r.Name = n.Content[k+1].Value
		}
	}
	seen := map[string]bool{}
	for k := 0; k+1 < len(n.Content); k += 2 {
		key, v := n.Content[k], n.Content[k+1]
		if seen[key.Value] {
			return fail(key, "key %q given twice", key.Value)
		}
		seen[key.Value] = true
		if v.Kind != yaml.ScalarNode {
			return fail(v, "%s: want a single value", key.Value)
		}
		switch key.Value {
		case "name":
		case "method":
			if _, err := glob.Compile(v.Value); err != nil {
				return fail(v, "method: %v", err)
			}
			r.Method = v.Value
		case "caller":
			if v.Value == "" || len(v.Value) > 255 {
				return fail(v, "caller %q: want a service name of 1 to 255 bytes", v.Value)
			}
			r.Caller = v.Value
		case "source":
			p, err := parsePrefix(v.Value)
			if err != nil {
				return fail(v, "source: %v", err)
			}
			r.Source = p
		case "rate":
			f, err := strconv.ParseFloat(v.Value, 64)
			if err != nil || !(f >= ratelimit.MinRate) || f > 1e9 || math.IsInf(f, 0) {
				return fail(v, "rate %q: give calls per second, from %v to 1e9", v.Value, ratelimit.MinRate)
			}
			r.Rate = f
		case "burst":
			b, err := strconv.Atoi(v.Value)
			if err != nil || b < 1 {
				return fail(v, "burst %q: give a whole number of calls, at least 1", v.Value)
			}
			r.Burst = b
		case "shared", "shadow":
			var b bool
			if err := v.Decode(&b); err != nil || v.Tag != "!!bool" {
				return fail(v, "%s %q: want true or false", key.Value, v.Value)
			}
			if key.Value == "shared" {
				r.Shared = b
			} else {
				r.Shadow = b
			}
		default:
			return fail(key, "unknown key %q: a limit has name, method, caller, source, rate, burst, shared, shadow", key.Value)
		}
	}
	if r.Rate == 0 {
		return fail(n, "no rate: add \"rate: N\" (calls per second)")
	}
	if r.Burst == 0 {
		return fail(n, "no burst: add \"burst: N\" (calls)")
	}
	// What the limiter itself refuses (a burst too deep for the rate).
	if _, err := ratelimit.New(ratelimit.Config{Rules: []ratelimit.Rule{r}, Loops: 1}); err != nil {
		_, msg, _ := strings.Cut(err.Error(), "): ")
		return fail(n, "%s", msg)
	}
	return r, nil
}

// parsePrefix takes a prefix in canonical form, or an address (a host).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is neither a prefix nor an address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %v?", s, p.Masked())
	}
	return p, nil
}

// MarshalDocument writes doc in the format ParseDocument reads.
func MarshalDocument(doc Document) ([]byte, error) {
	a, err := authz.Marshal(doc.Authz)
	if err != nil {
		return nil, err
	}
	if len(doc.Limits) == 0 {
		return a, nil
	}
	type limit struct {
		Name   string  `yaml:"name,omitempty"`
		Method string  `yaml:"method,omitempty"`
		Caller string  `yaml:"caller,omitempty"`
		Source string  `yaml:"source,omitempty"`
		Rate   float64 `yaml:"rate"`
		Burst  int     `yaml:"burst"`
		Shared bool    `yaml:"shared,omitempty"`
		Shadow bool    `yaml:"shadow,omitempty"`
	}
	var out struct {
		Limits []limit `yaml:"limits"`
	}
	for _, r := range doc.Limits {
		l := limit{Name: r.Name, Method: r.Method, Caller: r.Caller, Rate: r.Rate, Burst: r.Burst, Shared: r.Shared, Shadow: r.Shadow}
		if r.Source.IsValid() {
			l.Source = r.Source.String()
		}
		out.Limits = append(out.Limits, l)
	}
	b, err := yaml.Marshal(&out)
	if err != nil {
		return nil, err
	}
	return bytes.Join([][]byte{a, b}, nil), nil
}

package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileError is a policy file that could not be read: where and why. Line
// and Column count from 1; 0 when the error has no place (an unreadable
// file).
type FileError struct {
	File         string
	Line, Column int
	Msg          string
	Err          error // the underlying error, if any
}

func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString("authz: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteByte(':')
		}
	}
	if b.Len() > len("authz: ") {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *FileError) Unwrap() error { return e.Err }

// The fields a policy file may hold. Keys are matched exactly (lower case),
// so a misspelt key is an error rather than a silently ignored condition.
const fileFormat = `default: allow | deny            # optional, allow when absent
rules:
  - name: lab-readonly               # optional
    action: allow | deny             # required
    sources: [10.9.0.0/16, fd00::/8] # peer prefixes (an address means /32 or /128)
    identities: ["spiffe://td/ns/*"] # globs over the peer identity
    callers: [billing]               # CALLER tag values
    services: ["shop.*"]             # globs over "pkg.Service"
    methods: ["Get*"]                # globs over the method part
    message: "..."                   # sent with DENIED`

// FileFormat returns an annotated example of the file format, for help
// texts.
func FileFormat() string { return fileFormat }

var yamlLine = regexp.MustCompile(`line (\d+)`)

// Parse reads a policy from YAML (or JSON) data; name labels errors. Every
// error is a *FileError naming the line.
func Parse(name string, data []byte) (Spec, error) { return ParseSections(name, data) }

// Section is a top-level key of a policy file that another policy owns
// (the server's rate limits): ParseSections hands its value node to Parse,
// which reports errors as *FileError with the node's line (NodeError).
type Section struct {
	Key   string
	Parse func(file string, value *yaml.Node) error
}

// NodeError is a *FileError at node n of file.
func NodeError(file string, n *yaml.Node, format string, args ...any) error {
	e := &FileError{File: file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// ParseSections is Parse for a file that also holds the given sections
// beside "default" and "rules"; each section's Parse runs on its value
// when the key is present. Syntax errors of the whole file name the line
// as Parse does.
func ParseSections(name string, data []byte, sections ...Section) (Spec, error) {
	fail := func(n *yaml.Node, format string, args ...any) (Spec, error) {
		e := &FileError{File: name, Msg: fmt.Sprintf(format, args...)}
		if n != nil {
			e.Line, e.Column = n.Line, n.Column
		}
		return Spec{}, e
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Spec{}, nil // empty file: the empty policy
		}
		return Spec{}, syntaxError(name, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fail(&extra, "a second YAML document: a policy file holds one")
	} else if !errors.Is(err, io.EOF) {
		return Spec{}, syntaxError(name, data, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return Spec{}, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return fail(root, "the file must be a mapping with \"default\" and \"rules\"; the format is:\n%s", fileFormat)
	}
	var spec Spec
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "default", "rules":
			if seen[k.Value] {
				return fail(k, "key %q given twice", k.Value)
			}
			seen[k.Value] = true
		}
		switch k.Value {
		case "default":
			a, err := scalarAction(v)
			if err != nil {
				return fail(v, "default: %v", err)
			}
			spec.Default = a
		case "rules":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				return fail(v, "rules: want a list of rules")
			}
			for ri, rn := range v.Content {
				r, err := parseRule(name, ri, rn)
				if err != nil {
					return Spec{}, err
				}
				spec.Rules = append(spec.Rules, r)
			}
		default:
			sec := -1
			for i := range sections {
				if sections[i].Key == k.Value {
					sec = i
				}
			}
			if sec < 0 {
				keys := `"default" and "rules"`
				for _, s := range sections {
					keys += fmt.Sprintf(", %q", s.Key)
				}
				return fail(k, "unknown key %q: the top level has %s", k.Value, keys)
			}
			if seen[k.Value] {
				return fail(k, "key %q given twice", k.Value)
			}
			seen[k.Value] = true
			if err := sections[sec].Parse(name, v); err != nil {
				return Spec{}, err
			}
			continue
		}
	}
	return spec, nil
}

// ParseRule reads one rule, a YAML (or JSON) mapping as it would appear
// in "rules", from data; name labels errors, each a *FileError naming the
// line. For the admin API, which adds rules one at a time.
func ParseRule(name string, data []byte) (Rule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Rule{}, syntaxError(name, data, err)
	}
	n := &doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == 0 || n.Kind == yaml.DocumentNode {
		return Rule{}, &FileError{File: name, Line: 1, Msg: "no rule: give a mapping with action and conditions"}
	}
	return parseRule(name, 0, n)
}

func scalarAction(v *yaml.Node) (Action, error) {
	if v.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("want allow or deny")
	}
	return ParseAction(v.Value)
}

func parseRule(file string, ri int, n *yaml.Node) (Rule, error) {
	r := Rule{Line: n.Line}
	fail := func(at *yaml.Node, format string, args ...any) (Rule, error) {
		label := fmt.Sprintf("rule %d", ri+1)
		if r.Name != "" {
			label += fmt.Sprintf(" (%q)", r.Name)
		}
		return Rule{}, &FileError{File: file, Line: at.Line, Column: at.Column, Msg: label + ": " + fmt.Sprintf(format, args...)}
	}
	if n.Kind != yaml.MappingNode {
		return fail(n, "want a mapping with action and conditions")
	}
	// the name first, so later errors can use it
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			if v := n.Content[i+1]; v.Kind == yaml.ScalarNode {
				r.Name = v.Value
			}
		}
	}
	seen := map[string]bool{}
	hasAction := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return fail(k, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		var err error
		switch k.Value {
		case "name", "message":
			if v.Kind != yaml.ScalarNode {
				return fail(v, "%s: want a string", k.Value)
			}
			if k.Value == "message" {
				r.Message = v.Value
			}
		case "action":
			if r.Action, err = scalarAction(v); err != nil {
				return fail(v, "action: %v", err)
			}
			hasAction = true
		case "sources":
			items, bad := stringList(v)
			if bad != nil {
				return fail(bad, "sources: want a list of prefixes")
			}
			for j, s := range items {
				p, err := parsePrefix(s)
				if err != nil {
					return fail(itemNode(v, j), "sources: %v", err)
				}
				r.Sources = append(r.Sources, p)
			}
		case "identities", "callers", "services", "methods":
			items, bad := stringList(v)
			if bad != nil {
				return fail(bad, "%s: want a list of strings", k.Value)
			}
			switch k.Value {
			case "identities":
				r.Identities = items
			case "callers":
				r.Callers = items
			case "services":
				r.Services = items
			case "methods":
				r.Methods = items
			}
		default:
			return fail(k, "unknown key %q: a rule has name, action, sources, identities, callers, services, methods, message", k.Value)
		}
	}
	if !hasAction {
		return fail(n, "no action: add \"action: allow\" or \"action: deny\"")
	}
	// Check what Compile would refuse here, where the line is known.
	if _, err := compileRule(ri, r); err != nil {
		return fail(n, "%s", strings.TrimPrefix(err.Error(), "authz: "+where(ri, r)+": "))
	}
	return r, nil
}

// syntaxError turns the YAML parser's error into a FileError. The parser
// names the line where the construct holding the problem began (and, for
// parser errors, counts it from 0), so the line reported is instead the
// first line at which the file's beginning stops parsing with the same
// message; for a file too long to search that way, the parser's.
func syntaxError(name string, data []byte, err error) *FileError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(strings.Replace(msg, m[0]+": ", "", 1), m[0])
	}
	const searchMax = 2000 // lines; the search is quadratic
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) <= searchMax {
		end := 0
		for k, l := range lines {
			end += len(l)
			var n yaml.Node
			perr := yaml.Unmarshal(data[:end], &n)
			if perr == nil {
				continue
			}
			pmsg := yamlLine.ReplaceAllString(strings.TrimPrefix(perr.Error(), "yaml: "), "")
			if strings.TrimPrefix(pmsg, ": ") == msg {
				line = k + 1
				break
			}
		}
	}
	return &FileError{File: name, Line: max(line, 1), Msg: "YAML: " + msg, Err: err}
}

// stringList accepts a scalar or a list of scalars; on a bad shape it
// returns the offending node.
func stringList(v *yaml.Node) ([]string, *yaml.Node) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return nil, nil
		}
		return []string{v.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(v.Content))
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
				return nil, it
			}
			out = append(out, it.Value)
		}
		return out, nil
	}
	return nil, v
}

func itemNode(v *yaml.Node, j int) *yaml.Node {
	if v.Kind == yaml.SequenceNode && j < len(v.Content) {
		return v.Content[j]
	}
	return v
}

// parsePrefix takes a prefix in canonical form, or an address (a host).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a prefix nor an address", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone", s)
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

// ParseFile reads and parses the policy file at path.
func ParseFile(path string) (Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, &FileError{File: path, Msg: "reading the policy: " + err.Error(), Err: err}
	}
	return Parse(path, data)
}

// Marshal writes spec in the file format Parse reads.
func Marshal(spec Spec) ([]byte, error) {
	type rule struct {
		Name       string   `yaml:"name,omitempty"`
		Action     string   `yaml:"action"`
		Sources    []string `yaml:"sources,omitempty"`
		Identities []string `yaml:"identities,omitempty"`
		Callers    []string `yaml:"callers,omitempty"`
		Services   []string `yaml:"services,omitempty"`
		Methods    []string `yaml:"methods,omitempty"`
		Message    string   `yaml:"message,omitempty"`
	}
	var out struct {
		Default string `yaml:"default,omitempty"`
		Rules   []rule `yaml:"rules"`
	}
	if spec.Default != 0 {
		out.Default = spec.Default.String()
	}
	out.Rules = []rule{}
	for _, r := range spec.Rules {
		fr := rule{Name: r.Name, Action: r.Action.String(), Identities: r.Identities, Callers: r.Callers,
			Services: r.Services, Methods: r.Methods, Message: r.Message}
		for _, s := range r.Sources {
			fr.Sources = append(fr.Sources, s.String())
		}
		out.Rules = append(out.Rules, fr)
	}
	return yaml.Marshal(&out)
}

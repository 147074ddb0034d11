package static

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// ParseError says which line of an endpoints file is wrong.
type ParseError struct {
	Name string // the file's name as given to Parse
	Line int    // 1-based
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err) }

func (e *ParseError) Unwrap() error { return e.Err }

// attrPrefix introduces an attribute option.
const attrPrefix = "attr."

// Parse reads endpoints in the file format of the package doc, in file
// order. name is used in errors only. The first bad line ends the parse
// with a *ParseError.
func Parse(name string, data []byte) ([]runtime.Endpoint, error) {
	var eps []runtime.Endpoint
	lineOf := map[netip.AddrPort]int{}
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		ep, ok, err := parseLine(string(line))
		if err == nil && ok {
			if first, dup := lineOf[ep.Addr]; dup {
				err = fmt.Errorf("address %s repeats the one on line %d", ep.Addr, first)
			}
		}
		if err != nil {
			return nil, &ParseError{Name: name, Line: n + 1, Err: err}
		}
		if ok {
			lineOf[ep.Addr] = n + 1
			eps = append(eps, ep)
		}
	}
	return eps, nil
}

// parseLine reads one line; ok is false for a blank or comment line.
func parseLine(line string) (ep runtime.Endpoint, ok bool, err error) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return ep, false, nil
	}
	ep.Addr, err = parseAddr(fields[0])
	if err != nil {
		return ep, false, err
	}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		key, value, found := strings.Cut(f, "=")
		switch {
		case !found:
			return ep, false, fmt.Errorf("option %q: want key=value", f)
		case value == "":
			return ep, false, fmt.Errorf("option %q: empty value", f)
		case seen[key]:
			return ep, false, fmt.Errorf("option %q given twice", key)
		}
		seen[key] = true
		if err := setOption(&ep, key, value); err != nil {
			return ep, false, err
		}
	}
	return ep, true, nil
}

func parseAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("address %q: want IPv4:port or [IPv6]:port: %w", s, err)
	}
	if ap.Port() == 0 {
		return ap, fmt.Errorf("address %q: port 0", s)
	}
	if ap.Addr().Zone() != "" {
		return ap, fmt.Errorf("address %q: IPv6 zones are not supported", s)
	}
	return unmap(ap), nil
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }

// checkAddrs checks that every address is valid, has a port and appears
// once (an IPv4-mapped address counting as its IPv4 address).
func checkAddrs(eps []runtime.Endpoint) error {
	seen := map[netip.AddrPort]int{}
	for i, ep := range eps {
		if !ep.Addr.IsValid() || ep.Addr.Port() == 0 {
			return fmt.Errorf("endpoint %d: address %v: not a valid address with a port", i, ep.Addr)
		}
		if first, dup := seen[unmap(ep.Addr)]; dup {
			return fmt.Errorf("endpoint %d: address %s repeats endpoint %d", i, ep.Addr, first)
		}
		seen[unmap(ep.Addr)] = i
	}
	return nil
}

func setOption(ep *runtime.Endpoint, key, value string) error {
	switch key {
	case "weight":
		w, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return fmt.Errorf("weight %q: want an unsigned 32-bit decimal", value)
		}
		ep.Weight = uint32(w)
	case "zone":
		ep.Zone = value
	case "version":
		ep.Version = value
	case "health":
		h, err := discovery.ParseHealth(value)
		if err != nil {
			return err
		}
		ep.Health = h
	default:
		name, isAttr := strings.CutPrefix(key, attrPrefix)
		if !isAttr || name == "" {
			return fmt.Errorf("unknown option %q: want weight, zone, version, health or attr.KEY", key)
		}
		if ep.Attributes == nil {
			ep.Attributes = map[string]string{}
		}
		ep.Attributes[name] = value
	}
	return nil
}

// Format writes eps in the file format, one line each, attributes in key
// order. It fails on what the format cannot carry: an invalid address,
// a value that is empty (attributes) or holds whitespace or '#', an
// attribute key holding '=', or a repeated address.
func Format(eps []runtime.Endpoint) ([]byte, error) {
	if err := checkAddrs(eps); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for i, ep := range eps {
		b.WriteString(unmap(ep.Addr).String())
		opts := [][2]string{{"zone", ep.Zone}, {"version", ep.Version}}
		if ep.Weight != 0 {
			opts = append(opts, [2]string{"weight", strconv.FormatUint(uint64(ep.Weight), 10)})
		}
		if ep.Health != runtime.HealthServing {
			opts = append(opts, [2]string{"health", ep.Health.String()})
		}
		for _, k := range slices.Sorted(maps.Keys(ep.Attributes)) {
			if k == "" || strings.Contains(k, "=") || ep.Attributes[k] == "" {
				return nil, fmt.Errorf("endpoint %d: attribute %q=%q: the file format needs a key without '=' and a value", i, k, ep.Attributes[k])
			}
			opts = append(opts, [2]string{attrPrefix + k, ep.Attributes[k]})
		}
		for _, kv := range opts {
			if kv[1] == "" {
				continue // zone and version: empty means absent
			}
			if strings.ContainsFunc(kv[0]+kv[1], isSpaceOrHash) {
				return nil, fmt.Errorf("endpoint %d: %s=%q: the file format has no room for whitespace or '#'", i, kv[0], kv[1])
			}
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// isSpaceOrHash is what strings.Fields splits on or what starts a comment.
func isSpaceOrHash(r rune) bool { return r == '#' || unicode.IsSpace(r) }

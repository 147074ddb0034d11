package static

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

func TestParseReadsEveryOption(t *testing.T) {
	data := "# a comment line\n" +
		"10.0.0.1:7000 weight=3 zone=eu-1a version=1.4.2   # trailing comment\n" +
		"\n" +
		"\t[fd00::2]:7001\tzone=eu-1b health=draining attr.pod=echo-2 attr.x=a=b\r\n" +
		"[::ffff:10.0.0.3]:7002 health=unhealthy\n"
	eps, err := Parse("eps", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []runtime.Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.1:7000"), Weight: 3, Zone: "eu-1a", Version: "1.4.2"},
		{Addr: netip.MustParseAddrPort("[fd00::2]:7001"), Zone: "eu-1b", Health: runtime.HealthDraining,
			Attributes: map[string]string{"pod": "echo-2", "x": "a=b"}},
		{Addr: netip.MustParseAddrPort("10.0.0.3:7002"), Health: runtime.HealthUnhealthy},
	}
	if len(eps) != len(want) {
		t.Fatalf("got %d endpoints, want %d: %+v", len(eps), len(want), eps)
	}
	for i := range want {
		if !discovery.Equal(eps[i], want[i]) {
			t.Errorf("endpoint %d: got %+v, want %+v", i, eps[i], want[i])
		}
	}
}

func TestParseNamesTheBadLine(t *testing.T) {
	for _, tc := range []struct {
		data string
		line int
		says string
	}{
		{"10.0.0.1:1\n10.0.0.2\n", 2, "address"},
		{"10.0.0.1:0\n", 1, "port 0"},
		{"[fe80::1%eth0]:1\n", 1, "zone"},
		{"\n\n10.0.0.1:1 weight=-1\n", 3, "weight"},
		{"10.0.0.1:1 weight=4294967296\n", 1, "weight"},
		{"10.0.0.1:1 zone=a zone=b\n", 1, "twice"},
		{"10.0.0.1:1 zone=\n", 1, "empty value"},
		{"10.0.0.1:1 zone\n", 1, "key=value"},
		{"10.0.0.1:1 colour=red\n", 1, "unknown option"},
		{"10.0.0.1:1 attr.=x\n", 1, "unknown option"},
		{"10.0.0.1:1 health=sick\n", 1, "health"},
		{"10.0.0.1:1\n# c\n10.0.0.1:1 zone=b\n", 3, "line 1"},
		{"[::ffff:10.0.0.1]:1\n10.0.0.1:1\n", 2, "line 1"},
	} {
		_, err := Parse("f.txt", []byte(tc.data))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %v, want a *ParseError", tc.data, err)
			continue
		}
		if pe.Line != tc.line || pe.Name != "f.txt" || !strings.Contains(err.Error(), tc.says) ||
			!strings.HasPrefix(err.Error(), "f.txt:"+strconv.Itoa(tc.line)+": ") {
			t.Errorf("%q: error %q (line %d), want line %d saying %q", tc.data, err, pe.Line, tc.line, tc.says)
		}
	}
}

func TestParseEmptyIsNoEndpoints(t *testing.T) {
	for _, data := range []string{"", "\n", "# only a comment\n  \t\n"} {
		eps, err := Parse("e", []byte(data))
		if err != nil || len(eps) != 0 {
			t.Errorf("%q: %v, %v; want no endpoints and no error", data, eps, err)
		}
	}
}

func TestFormatRefusesWhatTheFormatCannotCarry(t *testing.T) {
	a := netip.MustParseAddrPort("10.0.0.1:1")
	for name, eps := range map[string][]runtime.Endpoint{
		"no address":    {{}},
		"port 0":        {{Addr: netip.MustParseAddrPort("10.0.0.1:0")}},
		"repeat":        {{Addr: a}, {Addr: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1")}},
		"space in zone": {{Addr: a, Zone: "eu 1"}},
		"hash":          {{Addr: a, Version: "1#2"}},
		"attr key =":    {{Addr: a, Attributes: map[string]string{"a=b": "c"}}},
		"attr empty":    {{Addr: a, Attributes: map[string]string{"a": ""}}},
	} {
		if out, err := Format(eps); err == nil {
			t.Errorf("%s: Format wrote %q", name, out)
		}
	}
}

// FuzzParse checks Parse against refParse, a second reading of the format
// written independently on net.SplitHostPort, net.ParseIP and
// bufio.ScanWords: both must accept the same inputs and read the same
// endpoints. What parses must survive Format → Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"10.0.0.1:7000 weight=3 zone=a version=1 health=draining attr.k=v\n[fd00::1]:1\n",
		"# c\n\n[::ffff:1.2.3.4]:80 attr.x=a=b\r\n",
		"1.2.3.4:0\n", "[1.2.3.4]:80\n", "::1:80\n", "[fe80::1%lo]:1\n", "1.2.3.4:+80\n",
		"1.2.3.4:1 weight=01 zone=\u00a0x\n", "1.2.3.4:1\n1.2.3.4:1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		eps, err := Parse("fuzz", data)
		ref, refErr := refParse(data)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("Parse error %v, reference error %v", err, refErr)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error %v is not a *ParseError with a line", err)
			}
			return
		}
		sameEndpoints(t, "reference", eps, ref)
		out, err := Format(eps)
		if err != nil {
			t.Fatalf("Format of parsed endpoints: %v", err)
		}
		again, err := Parse("formatted", out)
		if err != nil {
			t.Fatalf("Parse of Format output %q: %v", out, err)
		}
		sameEndpoints(t, "round trip", again, eps)
	})
}

func sameEndpoints(t *testing.T, what string, got, want []runtime.Endpoint) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d endpoints, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !discovery.Equal(got[i], want[i]) {
			t.Fatalf("%s: endpoint %d: %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// refParse is the reference reading of the file format; it shares no code
// with Parse.
func refParse(data []byte) ([]runtime.Endpoint, error) {
	var eps []runtime.Endpoint
	seen := map[string]bool{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		sc := bufio.NewScanner(bytes.NewReader(line))
		sc.Buffer(nil, len(line)+1)
		sc.Split(bufio.ScanWords)
		var words []string
		for sc.Scan() {
			words = append(words, sc.Text())
		}
		if len(words) == 0 {
			continue
		}
		host, portText, err := net.SplitHostPort(words[0])
		if err != nil {
			return nil, err
		}
		bracketed := strings.HasPrefix(words[0], "[")
		ip := net.ParseIP(host)
		port, perr := strconv.ParseUint(portText, 10, 16)
		if ip == nil || perr != nil || port == 0 || bracketed != strings.Contains(host, ":") {
			return nil, errors.New("bad address")
		}
		ep := runtime.Endpoint{}
		if v4 := ip.To4(); v4 != nil {
			ep.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(v4)), uint16(port))
		} else {
			ep.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip)), uint16(port))
		}
		if seen[ep.Addr.String()] {
			return nil, errors.New("repeated address")
		}
		seen[ep.Addr.String()] = true
		given := map[string]bool{}
		for _, w := range words[1:] {
			eq := strings.Index(w, "=")
			if eq < 0 || eq == len(w)-1 || given[w[:eq]] {
				return nil, errors.New("bad option")
			}
			k, v := w[:eq], w[eq+1:]
			given[k] = true
			switch {
			case k == "weight":
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return nil, err
				}
				ep.Weight = uint32(n)
			case k == "zone":
				ep.Zone = v
			case k == "version":
				ep.Version = v
			case k == "health":
				h := map[string]runtime.EndpointHealth{"serving": runtime.HealthServing, "draining": runtime.HealthDraining, "unhealthy": runtime.HealthUnhealthy}
				var ok bool
				if ep.Health, ok = h[v]; !ok {
					return nil, errors.New("bad health")
				}
			case len(k) > len("attr.") && k[:len("attr.")] == "attr.":
				if ep.Attributes == nil {
					ep.Attributes = map[string]string{}
				}
				ep.Attributes[k[len("attr."):]] = v
			default:
				return nil, errors.New("unknown option")
			}
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

package topo

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { leak.Main(m) }

func TestPairCarriesUDP(t *testing.T) {
	link := Pair(t, Config{Queues: 2, TxChecksumOff: true, XPS: true, MTU: 3000})
	if link.A.Ifindex == 0 || link.B.Ifindex == 0 || len(link.A.MAC) != 6 {
		t.Fatalf("endpoints not filled in: %+v %+v", link.A, link.B)
	}
	var server *net.UDPConn
	if err := link.A.Host.Do(func() (err error) {
		server, err = net.ListenUDP("udp4", &net.UDPAddr{IP: link.A.Addr4.AsSlice(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if err := link.B.Host.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: link.A.Addr4.AsSlice(), Port: 9999})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := server.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "hello" || !from.IP.Equal(link.B.Addr4.AsSlice()) {
		t.Fatalf("got %q from %v", buf[:n], from)
	}
	// The server's namespace must not see the client's interface, and the
	// root namespace must see neither.
	if _, err := net.InterfaceByName(link.A.Iface); err == nil {
		t.Fatalf("%s visible in the root namespace", link.A.Iface)
	}
	out, err := link.A.Host.Command(context.Background(), "cat", "/sys/class/net/"+link.A.Iface+"/mtu").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "3000" {
		t.Fatalf("mtu: %q %v", out, err)
	}
	out, err = link.A.Host.Command(context.Background(), "ls", "/sys/class/net/"+link.A.Iface+"/queues").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rx-1") || !strings.Contains(string(out), "tx-1") {
		t.Fatalf("queues: %q %v", out, err)
	}
	out, err = link.B.Host.Command(context.Background(), "ethtool", "-k", link.B.Iface).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tx-checksumming: off") {
		t.Fatalf("tx checksum offload still on: %s %v", out, err)
	}
	if v, err := link.A.Host.Netstat("Udp", "InDatagrams"); err != nil || v != 1 {
		t.Fatalf("Udp InDatagrams in server namespace = %d, %v; want 1", v, err)
	}
}

func TestTeardownRemovesNamespaces(t *testing.T) {
	var names []string
	t.Run("inner", func(t *testing.T) {
		topo := New(t, Config{Hosts: 3})
		for _, h := range topo.Hosts {
			names = append(names, h.Name)
		}
		if len(topo.Links) != 2 {
			t.Fatalf("links = %d, want 2", len(topo.Links))
		}
	})
	if len(names) == 0 {
		SkipMissing(t, "inner test skipped")
	}
	for _, n := range names {
		if _, err := os.Stat("/var/run/netns/" + n); err == nil {
			t.Errorf("namespace %s still exists after cleanup", n)
		}
	}
}

func TestParseSNMP(t *testing.T) {
	data := []byte("Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors\nUdp: 7 0 3\n")
	if v, err := parseSNMP(data, "Udp", "InErrors"); err != nil || v != 3 {
		t.Fatalf("got %d %v", v, err)
	}
	if _, err := parseSNMP(data, "Tcp", "InSegs"); err == nil {
		t.Fatal("missing section not reported")
	}
	six := []byte("Udp6InDatagrams                 \t5\nUdp6InCsumErrors                \t2\n")
	if v, err := parseSNMP6(six, "Udp6InCsumErrors"); err != nil || v != 2 {
		t.Fatalf("snmp6: got %d %v", v, err)
	}
	if _, err := parseSNMP6(six, "Udp6NoPorts"); err == nil {
		t.Fatal("missing snmp6 counter not reported")
	}
}

// fakeTB records what a skip helper did instead of ending a test.
type fakeTB struct {
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Cleanup(func())                    {}
func (f *fakeTB) Error(args ...any)                 { f.failed = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any)                 { f.failed = fmt.Sprint(args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }

func TestSkipMissingFailsWhenKernelTestsRequired(t *testing.T) {
	for _, tc := range []struct {
		env        string
		skip, fail bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	} {
		t.Setenv(RequireKernelTestsEnv, tc.env)
		var f fakeTB
		SkipMissing(&f, "needs %s", "CAP_BPF")
		if (f.skipped != "") != tc.skip || (f.failed != "") != tc.fail {
			t.Errorf("%s=%q: skipped %q, failed %q; want skip %v, fail %v", RequireKernelTestsEnv, tc.env, f.skipped, f.failed, tc.skip, tc.fail)
		}
		if msg := f.skipped + f.failed; !strings.Contains(msg, "needs CAP_BPF") {
			t.Errorf("%s=%q: message %q lacks the reason", RequireKernelTestsEnv, tc.env, msg)
		}
		if tc.fail && !strings.Contains(f.failed, RequireKernelTestsEnv) {
			t.Errorf("failure %q does not name %s", f.failed, RequireKernelTestsEnv)
		}
	}
}

// RequireRoot goes through SkipMissing: without the capabilities and with
// kernel tests required, it fails.
func TestRequireRootObeysRequirement(t *testing.T) {
	t.Setenv(RequireKernelTestsEnv, "1")
	var f fakeTB
	RequireRoot(&f)
	missing := MissingCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN)
	if (missing != "") != (f.failed != "") || f.skipped != "" {
		t.Fatalf("missing %q: RequireRoot skipped %q, failed %q", missing, f.skipped, f.failed)
	}
}

package sysinfo

import (
	"os"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if iface := os.Getenv(helperEnv); iface != "" {
		os.Exit(queueMapHelper(iface))
	}
	leak.Main(m)
}

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		bad  bool
	}{
		{in: "6.18.44-fc-v782", want: Version{6, 18, 44}},
		{in: "5.15.0-91-generic", want: Version{5, 15, 0}},
		{in: "6.1", want: Version{6, 1, 0}},
		{in: "6.8-rc3", want: Version{6, 8, 0}},
		{in: "4.19.0+", want: Version{4, 19, 0}},
		{in: "", bad: true},
		{in: "linux", bad: true},
		{in: "6.x", bad: true},
	} {
		got, err := ParseRelease(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseRelease(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRelease(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if !(Version{6, 1, 0}).AtLeast(6, 1) || (Version{5, 19, 9}).AtLeast(6, 0) || !(Version{7, 0, 0}).AtLeast(6, 18) {
		t.Error("AtLeast compares wrongly")
	}
}

func TestKernelMatchesProc(t *testing.T) {
	v, release, err := Kernel()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(data)); release != want {
		t.Fatalf("release %q, /proc says %q", release, want)
	}
	if v.Major < 3 {
		t.Fatalf("implausible version %v", v)
	}
}

func TestEffectiveCapsAgreeWithProcStatus(t *testing.T) {
	caps, err := EffectiveCaps()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		t.Fatal(err)
	}
	var hex string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			hex = strings.TrimSpace(v)
		}
	}
	var want uint64
	for _, c := range hex {
		want <<= 4
		switch {
		case c >= '0' && c <= '9':
			want |= uint64(c - '0')
		case c >= 'a' && c <= 'f':
			want |= uint64(c-'a') + 10
		}
	}
	if uint64(caps) != want {
		t.Fatalf("EffectiveCaps = %#x, CapEff = %s", uint64(caps), hex)
	}
	if os.Geteuid() == 0 {
		for _, c := range Relevant {
			if !caps.Has(c) {
				t.Errorf("root lacks %v", c)
			}
		}
	}
	if CapSet(0).Has(CapBPF) || !CapSet(1<<unix.CAP_BPF).Has(CapBPF) || CapNetAdmin.String() != "CAP_NET_ADMIN" {
		t.Error("CapSet/Capability helpers wrong")
	}
}

func TestMemlockLimit(t *testing.T) {
	soft, hard, err := MemlockLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft > hard {
		t.Fatalf("soft %d > hard %d", soft, hard)
	}
}

func TestBTFAndSysctls(t *testing.T) {
	_, statErr := os.Stat(BTFPath)
	if HaveBTF() != (statErr == nil) {
		t.Fatalf("HaveBTF = %v, stat: %v", HaveBTF(), statErr)
	}
	v, err := IoUringDisabled()
	if _, statErr := os.Stat(IoUringDisabledPath); statErr == nil {
		if err != nil || v < 0 || v > 2 {
			t.Fatalf("IoUringDisabled = %d, %v", v, err)
		}
	}
	mode, err := SeccompMode()
	if err != nil || mode < 0 || mode > 2 {
		t.Fatalf("SeccompMode = %d, %v", mode, err)
	}
}

package etcd_test

import (
	"encoding/json"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/runtime"
)

const testPrefix = "/zerohop/services/pkg.Echo/"

func TestDecodeRefusesWhatTheLayoutForbids(t *testing.T) {
	for _, tc := range []struct{ key, val, says string }{
		{testPrefix + "10.0.0.1:7000", `{"addr":"10.0.0.2:7000"}`, "differs"},
		{testPrefix + "10.0.0.1:7000", `{"weight":1}`, "addr"},
		{testPrefix + "10.0.0.1:0", `{"addr":"10.0.0.1:0"}`, "port"},
		{testPrefix + "10.0.0.1:7000", `{"addr":"10.0.0.1:7000","health":"sick"}`, "health"},
		{testPrefix + "10.0.0.1:7000", `{"addr":"10.0.0.1:7000","colour":"red"}`, "colour"},
		{testPrefix + "10.0.0.1:7000", `{"addr":"10.0.0.1:7000"} {}`, "after"},
		{testPrefix + "10.0.0.1:7000", `not json`, "value"},
		{"/zerohop/services/other/10.0.0.1:7000", `{"addr":"10.0.0.1:7000"}`, "not <service prefix>"},
		{testPrefix + "a/10.0.0.1:7000", `{"addr":"10.0.0.1:7000"}`, "not <service prefix>"},
	} {
		_, err := etcd.DecodeEndpoint(testPrefix, tc.key, []byte(tc.val))
		if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s = %s: error %v, want one naming the key and saying %q", tc.key, tc.val, err, tc.says)
		}
	}
}

// FuzzDecodeEndpoint: any value either fails to decode or decodes to an
// endpoint that EncodeEndpoint writes back to a value decoding to the
// same endpoint, and encoding/json reads the same fields from it.
func FuzzDecodeEndpoint(f *testing.F) {
	f.Add("10.0.0.1:7000", []byte(`{"addr":"10.0.0.1:7000","weight":3,"zone":"a","version":"1","health":"draining","attributes":{"pod":"p"}}`))
	f.Add("[fd00::1]:1", []byte(`{"addr":"[fd00::1]:1"}`))
	f.Add("1.2.3.4:1", []byte(`{"addr":"1.2.3.4:1","attributes":{"etcd.key":"spoofed"}}`))
	f.Add("1.2.3.4:1", []byte(`{"addr":"1.2.3.4:1","weight":4294967296}`))
	f.Fuzz(func(t *testing.T, addr string, val []byte) {
		key := testPrefix + addr
		ep, err := etcd.DecodeEndpoint(testPrefix, key, val)
		if err != nil {
			return
		}
		if ep.Attributes[etcd.AttrKey] != key {
			t.Fatalf("attribute %s = %q, want the key %q", etcd.AttrKey, ep.Attributes[etcd.AttrKey], key)
		}
		var raw struct {
			Addr   string `json:"addr"`
			Weight uint32 `json:"weight"`
			Zone   string `json:"zone"`
		}
		if err := json.Unmarshal(val, &raw); err != nil || netip.MustParseAddrPort(raw.Addr) != ep.Addr || raw.Weight != ep.Weight || raw.Zone != ep.Zone {
			t.Fatalf("encoding/json reads %+v (%v) from a value decoded as %+v", raw, err, ep)
		}
		again := ep
		again.Attributes = maps.Clone(ep.Attributes)
		delete(again.Attributes, etcd.AttrKey)
		out, err := etcd.EncodeEndpoint(again)
		if err != nil {
			t.Fatalf("encode %+v: %v", again, err)
		}
		back, err := etcd.DecodeEndpoint(testPrefix, key, out)
		if err != nil || !discovery.Equal(back, ep) {
			t.Fatalf("round trip %s: %+v, %v; want %+v", out, back, err, ep)
		}
	})
}

func TestEncodeRefusesNoAddress(t *testing.T) {
	if _, err := etcd.EncodeEndpoint(runtime.Endpoint{}); err == nil {
		t.Fatal("encoded an endpoint without address")
	}
}

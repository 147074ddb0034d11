package telemetry

import (
	"encoding/json"
	"testing"
)

// TestStatReportsSessions: with a SessionSource, /stat carries the
// sessions (peer identity, key age, packets, replays) and the refusals by
// reason; without one the section is absent.
func TestStatReportsSessions(t *testing.T) {
	rep := Snapshot(Sources{Sessions: fakeSessions{}})
	s := rep.Sessions
	if s == nil || len(s.Sessions) != 1 {
		t.Fatalf("sessions: %+v", s)
	}
	got := s.Sessions[0]
	if got.Peer != "spiffe://test.zerohop/ns/shop/sa/web" || got.ID != "00100001" || got.Role != "server" ||
		got.KeyAgeNs != 60e9 || got.Sealed != 10 || got.Opened != 11 || got.Replays != 1 || got.Suite != "AES-128-GCM" {
		t.Fatalf("session report %+v", got)
	}
	if s.Refused["replay"] != 1 || len(s.Refused) != 1 || s.Handshakes != 1 || s.HandshakesRefused != 1 {
		t.Fatalf("refusals %v, handshakes %d/%d", s.Refused, s.Handshakes, s.HandshakesRefused)
	}
	data, err := json.Marshal(Snapshot(Sources{}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["sessions"]; ok {
		t.Fatalf("a report without a session source has a sessions section: %s", data)
	}
}

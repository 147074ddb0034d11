package telemetry

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerohop/zerohop/mesh/identity"
)

// SessionSource is what telemetry reads of the sealed-frame sessions of a
// server or client with a sealer (runtime.WithSealer,
// runtime.WithClientSealer): *identity.Table implements it. Stats is
// called on every scrape and /stat; it takes the table's lock, which no
// event loop takes.
type SessionSource interface {
	Stats(now time.Time) identity.TableStats
}

// SessionsReport is the sealed-frame sessions as /stat serves them: one
// entry per session, the handshakes, and the frames the sealers refused
// by reason (only reasons that happened).
type SessionsReport struct {
	Handshakes        uint64            `json:"handshakes"`
	HandshakesRefused uint64            `json:"handshakes_refused"`
	Refused           map[string]uint64 `json:"refused"`
	Sessions          []SessionReport   `json:"sessions"`
}

// SessionReport is one session (identity.SessionStats).
type SessionReport struct {
	ID    string `json:"id"` // the local session id, hex
	Role  string `json:"role"`
	Peer  string `json:"peer"` // the peer's SPIFFE ID
	Addr  string `json:"addr"` // where its handshake came from
	Suite string `json:"suite"`
	// KeyAgeNs is the age of the older of the two current keys (sending
	// and receiving), KeyUpdates the updates of each direction.
	KeyAgeNs       int64     `json:"key_age_ns"`
	SendKeyUpdates uint64    `json:"send_key_updates"`
	RecvKeyUpdates uint64    `json:"recv_key_updates"`
	Sealed         uint64    `json:"sealed"`
	Opened         uint64    `json:"opened"`
	Replays        uint64    `json:"replays"`
	TooOld         uint64    `json:"too_old"`
	AuthFailures   uint64    `json:"auth_failures"`
	Established    time.Time `json:"established"`
	Expires        time.Time `json:"expires"`
}

func sessionsReport(src SessionSource, now time.Time) *SessionsReport {
	st := src.Stats(now)
	r := &SessionsReport{Handshakes: st.Handshakes, HandshakesRefused: st.Refusals, Refused: map[string]uint64{},
		Sessions: []SessionReport{}}
	for reason := identity.Reason(1); reason < identity.NumReasons; reason++ {
		if n := st.Refused[reason]; n > 0 {
			r.Refused[reason.String()] = n
		}
	}
	for _, s := range st.Sessions {
		r.Sessions = append(r.Sessions, SessionReport{ID: fmt.Sprintf("%08x", s.LocalID), Role: s.Role.String(),
			Peer: s.Peer, Addr: s.PeerAddr.String(), Suite: s.Suite.String(), KeyAgeNs: int64(max(s.SendKeyAge, s.RecvKeyAge)),
			SendKeyUpdates: s.SendKeyUpdates, RecvKeyUpdates: s.RecvKeyUpdates, Sealed: s.Sealed, Opened: s.Opened,
			Replays: s.Replays, TooOld: s.TooOld, AuthFailures: s.AuthFailures, Established: s.Established, Expires: s.Expires})
	}
	return r
}

// The sealed-frame metrics, registered only when a SessionSource is given.
var (
	mSessions        = def("zerohop_sealed_sessions", prometheus.GaugeValue, "Sealed-frame sessions held, by role (server: accepted, client: dialled).", "role")
	mHandshakes      = def("zerohop_sealed_handshakes_total", prometheus.CounterValue, "Identity handshakes, by result (completed, refused).", "result")
	mSealRefused     = def("zerohop_sealed_refused_total", prometheus.CounterValue, "Sealed frames the sealers refused to open or seal, by reason (header, unknown_session, address, direction, auth, replay, too_old, room, too_large, exhausted, no_session, unsealed).", "reason")
	mSealedRequests  = def("zerohop_sealed_requests_total", prometheus.CounterValue, "Requests a server with a sealer received, by whether they came sealed (sealed), unsealed and served (unsealed, permissive mode) or unsealed and answered DENIED (unsealed_denied, strict mode).", "queue", "kind")
	sessionMetrics   = []*metricDef{mSessions, mHandshakes, mSealRefused}
	sealServerMetric = []*metricDef{mSealedRequests}
)

func collectSessions(ch chan<- prometheus.Metric, src SessionSource, srv ServerSource) {
	st := src.Stats(time.Now())
	var byRole [3]float64
	for _, s := range st.Sessions {
		if int(s.Role) < len(byRole) {
			byRole[s.Role]++
		}
	}
	gauge(ch, mSessions, byRole[identity.RoleServer], identity.RoleServer.String())
	gauge(ch, mSessions, byRole[identity.RoleClient], identity.RoleClient.String())
	counter(ch, mHandshakes, st.Handshakes, "completed")
	counter(ch, mHandshakes, st.Refusals, "refused")
	for reason := identity.Reason(1); reason < identity.NumReasons; reason++ {
		counter(ch, mSealRefused, st.Refused[reason], reason.String())
	}
	if srv == nil {
		return
	}
	ss := srv.Stats()
	for i := range ss.Loops {
		l := &ss.Loops[i]
		q := strconv.Itoa(l.Queue)
		counter(ch, mSealedRequests, l.Sealed, q, "sealed")
		counter(ch, mSealedRequests, l.Unsealed, q, "unsealed")
		counter(ch, mSealedRequests, l.UnsealedDenied, q, "unsealed_denied")
	}
}

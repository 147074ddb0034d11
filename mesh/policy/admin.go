package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/authz"
)

// RuleStat is one authorization rule with its counters.
type RuleStat struct {
	Index  int    `json:"index"` // in the rules, -1 for the default
	Name   string `json:"name"`
	Action string `json:"action"`
	Line   int    `json:"line,omitempty"`
	// Hits counts the calls the rule decided in the middleware since the
	// policy was compiled.
	Hits uint64 `json:"hits"`
	// XDPDrops counts the packets the XDP ACL dropped for the rule since
	// its entries were written.
	XDPDrops uint64 `json:"xdp_drops"`
}

// LimitStat is one rate-limit bucket's counters since the limit was
// loaded.
type LimitStat struct {
	Limit         string `json:"limit"`
	Method        string `json:"method,omitempty"` // "" for a shared bucket
	Allowed       uint64 `json:"allowed"`
	Limited       uint64 `json:"limited"`
	ShadowLimited uint64 `json:"shadow_limited,omitempty"`
}

// ShedStat is the load shedder's counters since start.
type ShedStat struct {
	Admitted uint64 `json:"admitted"`
	Refused  uint64 `json:"refused"`
	InFlight uint64 `json:"in_flight"`
}

// XDPEntry is one entry of the XDP ACL for the server's port.
type XDPEntry struct {
	Source string `json:"source"`
	Port   uint16 `json:"port"`
	Action string `json:"action"`
	Hits   uint64 `json:"hits"`
}

// Stats is the policy in force and its counters, as the admin API shows
// them.
type Stats struct {
	Version  uint64      `json:"version"`
	Source   string      `json:"source"`
	LoadedAt time.Time   `json:"loaded_at,omitzero"`
	Summary  string      `json:"summary"`
	Empty    bool        `json:"empty"`
	Warnings []string    `json:"warnings,omitempty"`
	Default  string      `json:"default"`
	Rules    []RuleStat  `json:"rules"` // the default last
	Limits   []LimitStat `json:"limits"`
	Shed     *ShedStat   `json:"shed,omitempty"`
	XDPPort  uint16      `json:"xdp_port,omitempty"`
	XDP      []XDPEntry  `json:"xdp,omitempty"`
	XDPError string      `json:"xdp_error,omitempty"`
}

// Stats reads the counters of the policy in force (and, with an ACL
// attached, the XDP ACL's entries: a few map syscalls).
func (s *Server) Stats() Stats {
	st := s.cur.Load()
	out := Stats{Version: st.version, Source: st.source, LoadedAt: st.loadedAt, Summary: st.report.String(),
		Empty: st.report.Empty, Warnings: st.report.Warnings, Default: st.report.Authz.Default.String(),
		Rules: []RuleStat{}, Limits: []LimitStat{}}
	hits := st.authz.Hits()
	for i, r := range st.doc.Authz.Rules {
		out.Rules = append(out.Rules, RuleStat{Index: i, Name: st.authz.RuleName(i), Action: r.Action.String(), Line: r.Line, Hits: hits[i]})
	}
	out.Rules = append(out.Rules, RuleStat{Index: -1, Name: "default", Action: out.Default, Hits: hits[len(hits)-1]})
	for _, l := range st.limiter.Stats() {
		out.Limits = append(out.Limits, LimitStat{Limit: l.Rule, Method: l.Method, Allowed: l.Allowed, Limited: l.Limited, ShadowLimited: l.ShadowLimited})
	}
	if s.shed != nil {
		ss := s.shed.Stats()
		out.Shed = &ShedStat{Admitted: ss.Admitted, Refused: ss.Refused, InFlight: ss.InFlight}
	}
	drops, acl, err := s.XDPDrops()
	if err != nil {
		out.XDPError = err.Error()
	}
	s.mu.Lock()
	if s.acl != nil {
		out.XDPPort = s.acl.port
	}
	s.mu.Unlock()
	for _, d := range drops {
		for i := range out.Rules {
			if out.Rules[i].Index == d.Rule {
				out.Rules[i].XDPDrops = d.Drops
			}
		}
	}
	for _, a := range acl {
		if a.Port == out.XDPPort {
			out.XDP = append(out.XDP, XDPEntry{Source: a.Source.String(), Port: a.Port, Action: a.Action.String(), Hits: a.Hits})
		}
	}
	return out
}

// maxBody bounds what the admin API reads from a request.
const maxBody = 1 << 20

// Handler returns the policy admin API, to be mounted by the server's
// admin endpoint (under a prefix, with http.StripPrefix):
//
//	GET    /              the policy in force and its counters (Stats, JSON)
//	GET    /spec          the policy file in force (YAML)
//	PUT    /spec          replace it (body: a policy file, YAML or JSON)
//	POST   /rules?at=N    insert one authorization rule (body: a rule mapping) at N (default 0, the top)
//	DELETE /rules/{name}  delete the rule named name
//
// Writes answer 200 with the load's report (JSON), 400 with the error
// (which names the line of the body) when the policy in force stays, 404
// for a rule that is not there. A watched file wins again at its next
// change.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	mux.HandleFunc("GET /spec", func(w http.ResponseWriter, r *http.Request) {
		b, err := MarshalDocument(s.Document())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(b)
	})
	mux.HandleFunc("PUT /spec", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		doc, err := ParseDocument("request body", body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		rep, err := s.Load(doc, "api")
		s.answerLoad(w, rep, err)
	})
	mux.HandleFunc("POST /rules", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		at := 0
		if v := r.URL.Query().Get("at"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("at=%q: give the rule's position, 0 for the top", v))
				return
			}
			at = n
		}
		rule, err := authz.ParseRule("request body", body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		rule.Line = 0 // not a line of the policy file
		rep, err := s.Update("api", func(doc *Document) error {
			doc.Authz.Rules = slices.Insert(doc.Authz.Rules, min(at, len(doc.Authz.Rules)), rule)
			return nil
		})
		s.answerLoad(w, rep, err)
	})
	mux.HandleFunc("DELETE /rules/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		rep, err := s.Update("api", func(doc *Document) error {
			i := slices.IndexFunc(doc.Authz.Rules, func(r authz.Rule) bool { return r.Name == name })
			if i < 0 {
				// unnamed rules go by the name counters give them
				if n, err := fmt.Sscanf(name, "rule %d", &i); n != 1 || err != nil || i < 1 || i > len(doc.Authz.Rules) || doc.Authz.Rules[i-1].Name != "" {
					return fmt.Errorf("%w: %q", ErrNoSuchRule, name)
				}
				i--
			}
			doc.Authz.Rules = slices.Delete(doc.Authz.Rules, i, i+1)
			return nil
		})
		s.answerLoad(w, rep, err)
	})
	return mux
}

// LoadResult is the JSON answer to a write.
type LoadResult struct {
	Version  uint64   `json:"version"`
	Summary  string   `json:"summary"`
	Empty    bool     `json:"empty"`
	Warnings []string `json:"warnings,omitempty"`
	ACL      string   `json:"acl,omitempty"`
	ACLError string   `json:"acl_error,omitempty"`
}

func (s *Server) answerLoad(w http.ResponseWriter, rep Report, err error) {
	switch {
	case errors.Is(err, ErrNoSuchRule):
		writeError(w, http.StatusNotFound, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.logEvent(WatchEvent{Report: rep})
	res := LoadResult{Version: rep.Version, Summary: rep.String(), Empty: rep.Empty, Warnings: rep.Warnings}
	if rep.ACL != nil {
		res.ACL = rep.ACL.String()
		if rep.ACL.Err != nil {
			res.ACLError = rep.ACL.Err.Error()
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err))
		return nil, false
	}
	return b, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

package policy

import (
	"fmt"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/policy/authz"
)

// aclTarget is where the policy's L4 part goes: the XDP ACL of the
// interface's steering program, for the server's port.
type aclTarget struct {
	maps     authz.ACLMaps
	port     uint16
	compiled []authz.L4Rule // what the last sync wrote, for attributing hits
	policy   *authz.Policy  // the policy compiled
}

// ACLResult is one update of the XDP ACL.
type ACLResult struct {
	Port           uint16
	Entries        int // entries for the port after the update
	Added, Removed int
	Err            error
}

func (r ACLResult) String() string {
	if r.Err != nil {
		return fmt.Sprintf("XDP ACL for port %d NOT updated: %v", r.Port, r.Err)
	}
	return fmt.Sprintf("XDP ACL for port %d: %d entries (%d written, %d removed)", r.Port, r.Entries, r.Added, r.Removed)
}

// AttachACL compiles the policy's L4 part for port into the XDP ACL in
// maps — the steering program's, found with bpf.OpenAttached(iface) from
// any mount namespace — now and at every later load, so sources every
// method denies are dropped in the kernel (counted per rule, see
// XDPDrops). The Server owns the ACL entries of port from now on: it
// writes them and removes others for that port. It does not close maps.
func (s *Server) AttachACL(maps authz.ACLMaps, port uint16) ACLResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acl = &aclTarget{maps: maps, port: port}
	return s.syncACLLocked(s.cur.Load())
}

// DetachACL removes the port's entries from the ACL (so a port nobody
// serves is not left filtered) and stops updating it.
func (s *Server) DetachACL() ACLResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acl == nil {
		return ACLResult{}
	}
	a := s.acl
	s.acl = nil
	added, removed, err := authz.SyncACL(a.maps, a.port, nil)
	return ACLResult{Port: a.port, Added: added, Removed: removed, Err: err}
}

func (s *Server) syncACLLocked(st *state) ACLResult {
	a := s.acl
	want := st.authz.L4(a.port)
	added, removed, err := authz.SyncACL(a.maps, a.port, want)
	res := ACLResult{Port: a.port, Entries: len(want), Added: added, Removed: removed, Err: err}
	a.compiled, a.policy = want, st.authz
	if err != nil {
		s.log.Error("policy: updating the XDP ACL failed; the middleware enforces the new policy", "port", a.port, "err", err)
	}
	return res
}

// XDPDrops returns the packets the XDP program dropped for each policy
// rule (by the rule's index, -1 the default) since their entries were
// last written, or nil without an attached ACL.
func (s *Server) XDPDrops() ([]authz.RuleHits, []bpf.ACLRule, error) {
	s.mu.Lock()
	a := s.acl
	var compiled []authz.L4Rule
	var p *authz.Policy
	if a != nil {
		compiled, p = a.compiled, a.policy
	}
	s.mu.Unlock()
	if a == nil {
		return nil, nil, nil
	}
	all, err := a.maps.ACLRules()
	if err != nil {
		return nil, nil, fmt.Errorf("policy: reading the XDP ACL: %w", err)
	}
	return p.L4Hits(all, a.port, compiled), all, nil
}

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/authz"
	"github.com/zerohop/zerohop/mesh/policy/ratelimit"
	"github.com/zerohop/zerohop/mesh/policy/shed"
	"github.com/zerohop/zerohop/runtime"
)

// ServerConfig describes a server's policies. The zero value is valid: no
// rules, no limits, no shedder, until a policy is loaded.
type ServerConfig struct {
	// Loops is how many event loops the server runs at most: on io_uring
	// sockets one per WithQueues entry, on AF_XDP at most one per queue;
	// 0 means runtime.NumCPU(). Per-loop state goes to loops in the order
	// they first admit a call; loops beyond Loops share one state behind a
	// mutex (logged once at WARN), which is correct but slower.
	Loops int
	// Methods are full method names the server serves, known before they
	// are registered; methods registered on the runtime.Server are learnt
	// from the middleware either way.
	Methods []string
	// Shed turns the load shedder on for blocking methods (see the package
	// doc for why not loop methods); nil leaves it off. Its Loops is
	// filled in. It is fixed for the Server's life: reloads change rules
	// and limits, not the shedder.
	Shed *shed.Config
	// Logger receives reload results and warnings; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Server holds one runtime.Server's policies: the stages of its admission
// and handler chains (Admission, Middleware, Options), the policy in force
// (Load, LoadFile, Watch, Update), its XDP part (AttachACL) and the admin
// API (Handler). One Server serves one runtime.Server.
type Server struct {
	log       *slog.Logger
	shards    *shardTable
	shed      *shed.Shedder // nil: off
	shedRetry time.Duration

	mu      sync.Mutex // serializes loads, method registration and ACL syncs
	methods []string
	cur     atomic.Pointer[state]
	version uint64
	acl     *aclTarget
	// lastFile and lastData are the file the last file load read.
	lastFile string
	lastData []byte
}

// state is one compiled policy, swapped in whole: a call reads it once per
// stage and sees the old policy or the new one, never a mix within a stage.
type state struct {
	doc     Document
	authz   *authz.Policy
	limiter *ratelimit.Limiter
	// authzCaller, limitCaller: some rule or limit looks at the CALLER
	// tag (else the stages skip reading it from the extension block).
	authzCaller, limitCaller bool
	report                   Report
	source                   string
	loadedAt                 time.Time
	version                  uint64
}

// Report describes a policy put in force.
type Report struct {
	Version uint64
	Source  string // file name, "api", "" for the initial empty policy
	Authz   authz.Report
	Limits  int
	// Empty: no rule and no limit; every call gets the default action.
	Empty bool
	// Warnings: method globs that match no known method, limits that
	// limit nothing.
	Warnings []string
	// ACL is the XDP part's update, when an ACL is attached.
	ACL *ACLResult
}

func (r Report) String() string {
	var b strings.Builder
	if r.Empty {
		fmt.Fprintf(&b, "empty policy: no rules and no limits, every call gets the default action (%v)", r.Authz.Default)
	} else {
		fmt.Fprintf(&b, "%d rules (default %v), %d limits", r.Authz.Rules, r.Authz.Default, r.Limits)
	}
	if r.ACL != nil {
		b.WriteString("; " + r.ACL.String())
	}
	for _, w := range r.Warnings {
		b.WriteString("\nwarning: ")
		b.WriteString(w)
	}
	return b.String()
}

// NewServer builds a Server with the empty policy in force.
func NewServer(cfg ServerConfig) (*Server, error) {
	loops := cfg.Loops
	if loops == 0 {
		loops = goruntime.NumCPU()
	}
	if loops < 1 {
		return nil, fmt.Errorf("policy: ServerConfig.Loops is %d: give the most event loops the server runs (≥ 1), or 0", cfg.Loops)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log}
	s.shards = newShardTable(loops, func(queue int) {
		log.Warn("policy: more event loops than ServerConfig.Loops: the extra loops share one policy state behind a mutex; raise Loops",
			"loops", loops, "queue", queue)
	})
	for _, m := range cfg.Methods {
		if !slices.Contains(s.methods, m) {
			s.methods = append(s.methods, m)
		}
	}
	if cfg.Shed != nil {
		sc := *cfg.Shed
		sc.Loops = s.shards.loops()
		sh, err := shed.New(sc)
		if err != nil {
			return nil, fmt.Errorf("policy: ServerConfig.Shed: %w", err)
		}
		s.shed, s.shedRetry = sh, sh.RetryAfter()
	}
	st, err := s.compile(Document{}, nil)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

// compile builds the state of doc against the known methods, carrying the
// rate limiter's buckets over from prev. Only under s.mu (or in NewServer).
func (s *Server) compile(doc Document, prev *state) (*state, error) {
	methods := s.authzMethods()
	p, err := authz.Compile(doc.Authz, methods, s.shards.loops())
	if err != nil {
		return nil, err
	}
	lim, err := ratelimit.New(ratelimit.Config{Rules: doc.Limits, Methods: methods, Loops: s.shards.loops()})
	if err != nil {
		return nil, limitError(doc, err)
	}
	if prev != nil {
		lim.Carry(prev.limiter)
	}
	rep := Report{Authz: p.Report(), Limits: len(doc.Limits), Empty: doc.Empty()}
	rep.Warnings = append(append(rep.Warnings, rep.Authz.Warnings...), lim.Warnings()...)
	st := &state{doc: doc, authz: p, limiter: lim, report: rep}
	for _, r := range doc.Authz.Rules {
		st.authzCaller = st.authzCaller || len(r.Callers) > 0
	}
	for _, l := range doc.Limits {
		st.limitCaller = st.limitCaller || l.Caller != ""
	}
	return st, nil
}

// limitError adds the limit's line to a ratelimit error ("rule N" there is
// the limit's index from 0).
func limitError(doc Document, err error) error {
	for i := range doc.Limits {
		if strings.Contains(err.Error(), fmt.Sprintf("rule %d ", i)) && i < len(doc.LimitLines) && doc.LimitLines[i] > 0 {
			return fmt.Errorf("policy: limit %d at line %d: %w", i+1, doc.LimitLines[i], err)
		}
	}
	return fmt.Errorf("policy: limits: %w", err)
}

// authzMethods are the known methods authz can compile: full names
// "pkg.Service/Method" (others are matched as unknown ids).
func (s *Server) authzMethods() []string {
	out := make([]string, 0, len(s.methods))
	for _, m := range s.methods {
		if i := strings.IndexByte(m, '/'); i > 0 && i < len(m)-1 && strings.Count(m, "/") == 1 {
			out = append(out, m)
		}
	}
	return out
}

// learn adds a method registered on the runtime.Server and recompiles the
// policy in force against it.
func (s *Server) learn(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.methods, name) {
		return
	}
	s.methods = append(s.methods, name)
	cur := s.cur.Load()
	st, err := s.compile(cur.doc, cur)
	if err != nil {
		// The policy compiled before; only a method id collision can fail
		// here, which the runtime refuses at registration anyway.
		s.log.Error("policy: recompiling for a new method failed; the policy in force stays", "method", name, "err", err)
		return
	}
	st.source, st.loadedAt, st.version = cur.source, cur.loadedAt, cur.version
	st.report.Version, st.report.Source = cur.version, cur.source
	s.cur.Store(st)
	if s.acl != nil {
		s.syncACLLocked(st) // the L4 part depends on the known methods
	}
}

// Load puts doc in force, source naming where it came from (a file name,
// "api"). On error the policy in force stays. The report includes the
// XDP ACL's update when one is attached; a failed ACL update leaves the
// new policy in force in the middleware (which denies the same calls the
// kernel would have dropped) and is reported in Report.ACL.
func (s *Server) Load(doc Document, source string) (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(doc, source)
}

func (s *Server) loadLocked(doc Document, source string) (Report, error) {
	st, err := s.compile(doc, s.cur.Load())
	if err != nil {
		return Report{}, err
	}
	s.version++
	st.source, st.loadedAt, st.version = source, time.Now(), s.version
	st.report.Version, st.report.Source = s.version, source
	s.cur.Store(st)
	rep := st.report
	if s.acl != nil {
		res := s.syncACLLocked(st)
		rep.ACL = &res
	}
	return rep, nil
}

// LoadFile reads the policy file at path and puts it in force; on any
// error the policy in force stays and the error names the file and line.
func (s *Server) LoadFile(path string) (Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Report{}, &authz.FileError{File: path, Msg: "reading the policy: " + err.Error(), Err: err}
	}
	return s.loadFileData(path, data)
}

func (s *Server) loadFileData(path string, data []byte) (Report, error) {
	doc, err := ParseDocument(path, data)
	if err != nil {
		return Report{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, err := s.loadLocked(doc, path)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w", path, err)
	}
	s.lastFile, s.lastData = path, data
	return rep, nil
}

// loadedAlready reports whether data is the file the policy in force was
// last loaded from (so a Watch started after LoadFile does not load it
// again).
func (s *Server) loadedAlready(path string, data []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastFile == path && bytes.Equal(s.lastData, data) && s.cur.Load().source == path
}

// Update edits the document in force under the Server's lock (so edits
// through the admin API do not lose each other's changes) and loads the
// result; an error from edit or from compiling keeps the policy in force.
func (s *Server) Update(source string, edit func(doc *Document) error) (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc := cloneDocument(s.cur.Load().doc)
	if err := edit(&doc); err != nil {
		return Report{}, err
	}
	return s.loadLocked(doc, source)
}

func cloneDocument(d Document) Document {
	d.Authz.Rules = slices.Clone(d.Authz.Rules)
	d.Limits = slices.Clone(d.Limits)
	d.LimitLines = slices.Clone(d.LimitLines)
	return d
}

// Document returns the document in force.
func (s *Server) Document() Document { return cloneDocument(s.cur.Load().doc) }

// Report returns the report of the policy in force (without ACL result).
func (s *Server) Report() Report { return s.cur.Load().report }

// Methods returns the methods the policies know.
func (s *Server) Methods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.methods)
}

// ErrNoSuchRule is returned by rule edits naming a rule that is not there.
var ErrNoSuchRule = errors.New("policy: no such rule")

// Options returns the runtime options that install the chains: pass them
// to runtime.Listen.
func (s *Server) Options() []runtime.Option {
	return []runtime.Option{runtime.WithAdmission(s.Admission()...), runtime.WithMiddleware(s.Middleware()...)}
}

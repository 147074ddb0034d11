package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"github.com/zerohop/zerohop/runtime/internal/xskhook"
)

// ErrServerClosed is returned by Start on a server that was shut down,
// and by Serve when the server was shut down by a call to Shutdown rather
// than by Serve's own context.
var ErrServerClosed = errors.New("runtime: server closed")

// ErrAddrInUse is what Listen's error wraps when another server holds the
// address (a zerohop server that did not opt in to sharing it with
// WithReusePort, or any other socket); the error names the holder.
var ErrAddrInUse = sockpath.ErrAddrInUse

// Server serves GWIR requests on one address. Create it with Listen,
// register handlers, then Serve (or Start and later Shutdown).
type Server struct {
	cfg     config
	addr    netip.AddrPort
	backend Backend
	reason  string
	core    *engine.Server
	plan    []loopPlan
	loops   []*engine.Loop
	tcps    []*sockpath.TCPServer
	xsk     xskhook.Path // nil on the uring backend
	guard   *sockpath.Guard

	mu           sync.Mutex // guards registration and the lifecycle
	started      bool
	closed       bool
	byServe      bool // Serve's own context caused the shutdown
	registration Registration
	stopped      chan struct{} // closed when Shutdown has released everything
	shutdownErr  error
}

// loopPlan is what one loop serves: the RX queues whose AF_XDP sockets it
// owns (none on the uring backend) and the core it is pinned to.
type loopPlan struct {
	queues  []int
	core    int
	sources []engine.Source // the AF_XDP sockets of queues, in order
}

// Listen prepares a server for network "udp" (or "udp4"/"udp6") on addr
// ("IP:PORT"; port 0 picks one). It picks the backend (see WithBackend),
// opens its sockets and binds them, but serves nothing until Start or
// Serve. Errors name the backend and the reason; with BackendAuto, a
// failure of the XSK backend falls back to io_uring sockets, logged at
// WARN with the cause and kept in BackendReason.
func Listen(network, addr string, opts ...Option) (_ *Server, err error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("runtime: Listen: network %q not supported (want udp, udp4 or udp6)", network)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if len(cfg.cores) != 0 && len(cfg.cores) != len(cfg.queues) {
		return nil, fmt.Errorf("runtime: WithCores gives %d cores for %d queues (WithQueues): give one core per queue", len(cfg.cores), len(cfg.queues))
	}
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, fmt.Errorf("runtime: Listen: %w", err)
	}
	ap := ua.AddrPort()
	s := &Server{cfg: cfg, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), stopped: make(chan struct{})}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if err := s.claimAddr(); err != nil {
		return nil, err
	}
	if err := s.chooseBackend(); err != nil {
		return nil, err
	}
	if err := s.openSockets(); err != nil {
		return nil, err
	}
	return s, nil
}

// Handle registers fn for the method "pkg.Service/Method". fn runs on the
// event loop itself: it must not block (use HandleBlocking for that).
// Registering a name twice, or two names with the same method id, panics,
// as a programming error. Handlers may be added while serving.
func (s *Server) Handle(method string, fn HandlerFunc) { s.register(method, fn, false) }

// HandleBlocking registers fn for method to run on the server's worker pool,
// off the event loop, so it may block. Its reply is sent by the loop that
// received the request once fn returns. When the pool's queue is full the
// request is answered OVERLOADED; a request whose deadline passes while it
// waits in the queue is answered DEADLINE_EXCEEDED without running fn.
func (s *Server) HandleBlocking(method string, fn HandlerFunc) { s.register(method, fn, true) }

func (s *Server) register(method string, fn HandlerFunc, blocking bool) {
	if method == "" || fn == nil {
		panic("runtime: Handle with an empty method name or nil handler")
	}
	id := proto.MethodID(method)
	if id == 0 {
		panic(fmt.Sprintf("runtime: method %q hashes to id 0, which PING uses; rename it", method))
	}
	info := MethodInfo{Name: method, ID: id, Blocking: blocking}
	m := &engine.Method{Name: method, ID: id, Blocking: blocking,
		Serve: stage(chain(info, fn, s.cfg.middleware))}
	if len(s.cfg.admission) > 0 {
		admit, rel := admission(info, s.cfg.admission)
		m.Admit, m.Release = stage(admit), releaseFunc(rel)
	}
	if err := s.core.Methods.Add(m); err != nil {
		panic("runtime: " + err.Error())
	}
}

// Backend returns the backend the server runs on.
func (s *Server) Backend() Backend { return s.backend }

// BackendReason says why Backend was chosen (or why XSK was not).
func (s *Server) BackendReason() string { return s.reason }

// Addr is the address served (with the port chosen when Listen got 0).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Queues returns the RX queues served through AF_XDP sockets and, index
// for index, the cores their loops are pinned to. On the uring backend it
// returns the loop indexes and their cores.
func (s *Server) Queues() (queues, cores []int) {
	for i, p := range s.plan {
		if len(p.queues) == 0 {
			queues, cores = append(queues, i), append(cores, p.core)
		}
		for _, q := range p.queues {
			queues, cores = append(queues, q), append(cores, p.core)
		}
	}
	return queues, cores
}

// Start starts the event loops and returns once they serve. On the XSK
// backend the port is steered to the AF_XDP sockets only now, once they
// can receive; until then its datagrams reach the server's kernel sockets.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return errors.New("runtime: Start called twice")
	}
	s.core.Pool.Start()
	var first error
	for _, l := range s.loops {
		if err := l.Start(); err != nil && first == nil {
			first = err
		}
	}
	if first == nil && s.xsk != nil {
		// Listen checked the port; another server can only have taken it
		// since.
		first = s.xsk.Steer()
	}
	if first == nil && s.cfg.registry != nil {
		s.registration, first = s.cfg.registry.Register(context.Background(), s.cfg.service, Endpoint{Addr: s.addr})
		if first != nil {
			first = fmt.Errorf("runtime: registering %s as %s: %w", s.cfg.service, s.addr, first)
		}
	}
	if first != nil {
		s.closed = true
		s.stopAll(context.Background())
		close(s.stopped)
		return first
	}
	s.started = true
	s.cfg.logger.Info("zerohop serving", "addr", s.addr.String(), "backend", s.backend.String(),
		"reason", s.reason, "tcp", s.cfg.tcp, "loops", s.describeLoops(), "cores_from", s.coresFrom(), "detail", s.describe())
	return nil
}

// Serve starts the server (unless started) and serves until ctx is done,
// then shuts down gracefully, giving in-flight requests the grace of
// WithShutdownGrace. It returns nil after a shutdown caused by ctx, the
// error that stopped a loop, or ErrServerClosed when Shutdown was called
// from elsewhere.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		if err := s.Start(); err != nil {
			return err
		}
	}
	var loopErr error
	select {
	case <-ctx.Done():
	case loopErr = <-s.core.Failed():
	case <-s.stopped:
		return ErrServerClosed
	}
	s.mu.Lock()
	if !s.closed {
		s.byServe = true
	}
	s.mu.Unlock()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.shutdownGrace)
	defer cancel()
	err := s.Shutdown(shutdownCtx)
	s.mu.Lock()
	byServe := s.byServe
	s.mu.Unlock()
	switch {
	case loopErr != nil:
		return loopErr
	case !byServe:
		return ErrServerClosed
	}
	return err
}

// Shutdown drains the server: its registration (WithRegistry) is withdrawn,
// the port stops being steered to AF_XDP sockets (its datagrams reach the
// same loops through the kernel sockets), PINGs are answered "draining" and
// new requests OVERLOADED while requests already handed to blocking
// handlers finish (and for at least WithDrainDelay), until ctx is done. Then blocking requests still queued
// never start (Stats.Abandoned counts them), the loops stop, and every
// socket, ring, XDP attachment and pinned map is released. It returns
// ctx's error when in-flight requests were abandoned, nil otherwise; a
// second call waits for the first and returns its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.stopped
		return s.shutdownErr
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	var errs []error
	if s.registration != nil {
		if err := s.registration.Deregister(ctx); err != nil {
			errs = append(errs, fmt.Errorf("runtime: withdrawing the registration: %w", err))
		}
	}
	if s.xsk != nil {
		if err := s.xsk.Unsteer(); err != nil {
			errs = append(errs, err)
		}
	}
	s.core.Draining.Store(true)
	var drainErr error
	if started && s.cfg.drainDelay > 0 {
		t := time.NewTimer(s.cfg.drainDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if started {
		drainErr = s.core.Pool.Drain(ctx, s.owesReplies)
	}
	if err := s.stopAll(ctx); drainErr == nil {
		drainErr = err
	}
	for _, err := range errs {
		s.cfg.logger.Warn("zerohop shutdown", "err", err)
	}
	s.shutdownErr = drainErr
	close(s.stopped)
	return drainErr
}

// stopAll stops starting queued jobs, stops the loops and the workers and
// releases every resource.
func (s *Server) stopAll(ctx context.Context) error {
	s.core.Pool.StopStarts()
	s.core.Cancel()
	for _, l := range s.loops {
		if l.Started() {
			l.RequestStop()
		}
	}
	for _, l := range s.loops {
		if l.Started() {
			<-l.Exited()
		}
	}
	err := s.core.Pool.Close(ctx)
	s.release()
	return err
}

// release closes what the loops do not own: the AF_XDP attachment and
// the address claim (and, through Discard, the eventfds and sockets of
// loops that never started).
func (s *Server) release() {
	for _, l := range s.loops {
		l.Discard()
	}
	if s.xsk != nil {
		if err := s.xsk.Close(); err != nil {
			s.cfg.logger.Error("releasing AF_XDP", "err", err)
		}
	}
	s.guard.Release()
}

func (s *Server) owesReplies() bool {
	for _, t := range s.tcps {
		if t.OwesReplies() {
			return true
		}
	}
	return false
}

// Draining reports whether Shutdown has begun: PINGs are answered
// draining and new requests OVERLOADED from then on. One atomic load, for
// health endpoints.
func (s *Server) Draining() bool { return s.core != nil && s.core.Draining.Load() }

// Stats snapshots the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Backend: s.backend, Total: newLoopStats(-1, nil, -1)}
	if s.core == nil {
		return st
	}
	var socks []xskhook.SocketStats
	if s.xsk != nil {
		socks = s.xsk.Stats()
	}
	fill := map[int]uint64{}
	for _, ss := range socks {
		fill[ss.Queue] = ss.FillRingEmpty
	}
	for i, l := range s.loops {
		p := s.plan[i]
		q := i
		if len(p.queues) > 0 {
			q = p.queues[0]
		}
		ls := newLoopStats(q, append([]int(nil), p.queues...), p.core)
		snap := l.Counters.Snapshot()
		ls.addSnapshot(&snap)
		for _, q := range p.queues {
			ls.FillRingEmpty += fill[q]
			st.Queues = append(st.Queues, s.queueStats(q, p.core, socks))
		}
		st.Total.addSnapshot(&snap)
		st.Total.FillRingEmpty += ls.FillRingEmpty
		st.Loops = append(st.Loops, ls)
	}
	sort.Slice(st.Queues, func(i, j int) bool { return st.Queues[i].Queue < st.Queues[j].Queue })
	for _, m := range s.core.Methods.All() {
		st.Methods = append(st.Methods, methodStats(m))
	}
	sort.Slice(st.Methods, func(i, j int) bool { return st.Methods[i].Method < st.Methods[j].Method })
	st.Abandoned = s.core.Pool.Abandoned()
	return st
}

// queueStats is one AF_XDP queue's counters.
func (s *Server) queueStats(q, core int, socks []xskhook.SocketStats) QueueStats {
	qs := QueueStats{Queue: q, Core: core, IRQ: s.xsk.IRQ(q)}
	for _, ss := range socks {
		if ss.Queue == q {
			qs.RX, qs.TX, qs.FillRingEmpty = ss.RX, ss.TX, ss.FillRingEmpty
		}
	}
	return qs
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// ErrServerClosed is returned by Start, Serve and Shutdown on a server that
// was already shut down.
var ErrServerClosed = errors.New("runtime: server closed")

// Server serves GWIR requests on one address. Create it with Listen,
// register handlers, then Serve (or Start and later Shutdown).
type Server struct {
	cfg     config
	addr    netip.AddrPort
	backend Backend
	reason  string

	mu       sync.Mutex // guards handler registration and the lifecycle
	handlers atomic.Pointer[map[uint32]*handlerEntry]
	started  bool
	closed   bool

	draining atomic.Bool
	workers  *workerPool
	impl     backendImpl
	stopped  chan struct{} // closed when the backend has shut down
	loopErr  chan error    // the first loop failure, if any
}

// backendImpl is one data path: it owns the sockets, rings and loops.
type backendImpl interface {
	// start starts one loop per queue and returns once each has set up its
	// ring (or the first failure, with everything released).
	start(s *Server) error
	// stop makes every loop exit, waits for them and releases everything.
	stop()
	// loopStats snapshots each loop's counters.
	loopStats() []LoopStats
	// describe names what serves, for the start-up log line.
	describe() string
	// owesReplies reports replies accepted but not yet handed to the
	// kernel outside the worker pool's count (TCP connections' queues).
	owesReplies() bool
}

type handlerEntry struct {
	srv         *Server
	name        string
	fn          HandlerFunc
	blocking    bool
	panicLogged atomic.Bool
}

// Listen prepares a server for network "udp" (or "udp4"/"udp6") on addr
// ("IP:PORT"; port 0 picks one). It picks the backend (see WithBackend),
// opens its sockets and binds them, but serves nothing until Start or Serve.
// Errors name the backend and the reason; with BackendAuto, a failure of the
// XSK backend falls back to io_uring sockets and the reason is logged and
// kept in BackendReason.
func Listen(network, addr string, opts ...Option) (*Server, error) {
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
		return nil, fmt.Errorf("runtime: WithCores gives %d cores for %d queues", len(cfg.cores), len(cfg.queues))
	}
	if len(cfg.cores) == 0 {
		for _, q := range cfg.queues {
			cfg.cores = append(cfg.cores, q%runtime.NumCPU())
		}
	}
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, fmt.Errorf("runtime: Listen: %w", err)
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s := &Server{cfg: cfg, addr: ap, stopped: make(chan struct{}), loopErr: make(chan error, 1)}
	empty := map[uint32]*handlerEntry{}
	s.handlers.Store(&empty)
	s.workers = newWorkerPool(cfg.workers, cfg.workQueue)
	if err := s.chooseBackend(); err != nil {
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
// request is answered OVERLOADED.
func (s *Server) HandleBlocking(method string, fn HandlerFunc) { s.register(method, fn, true) }

func (s *Server) register(method string, fn HandlerFunc, blocking bool) {
	if method == "" || fn == nil {
		panic("runtime: Handle with an empty method name or nil handler")
	}
	id := proto.MethodID(method)
	if id == 0 {
		panic(fmt.Sprintf("runtime: method %q hashes to id 0, which PING uses; rename it", method))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.handlers.Load()
	if h, ok := old[id]; ok {
		if h.name == method {
			panic(fmt.Sprintf("runtime: method %q registered twice", method))
		}
		panic(fmt.Sprintf("runtime: methods %q and %q have the same id %#x", h.name, method, id))
	}
	next := make(map[uint32]*handlerEntry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[id] = &handlerEntry{srv: s, name: method, fn: fn, blocking: blocking}
	s.handlers.Store(&next)
}

func (s *Server) lookup(id uint32) *handlerEntry { return (*s.handlers.Load())[id] }

// Backend returns the backend the server runs on.
func (s *Server) Backend() Backend { return s.backend }

// BackendReason says why Backend was chosen (or why XSK was not).
func (s *Server) BackendReason() string { return s.reason }

// Addr is the address served (with the port chosen when Listen got 0).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Queues returns the served queues and, index for index, the cores their
// loops are pinned to.
func (s *Server) Queues() (queues, cores []int) {
	return append([]int(nil), s.cfg.queues...), append([]int(nil), s.cfg.cores...)
}

// Start starts the event loops and returns once they serve.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return errors.New("runtime: Start called twice")
	}
	s.workers.start()
	if err := s.impl.start(s); err != nil {
		s.closed = true
		s.workers.close(context.Background())
		s.impl.stop()
		close(s.stopped)
		return err
	}
	s.started = true
	s.cfg.logger.Info("zerohop serving", "addr", s.addr.String(), "backend", s.backend.String(),
		"reason", s.reason, "queues", s.cfg.queues, "cores", s.cfg.cores, "detail", s.impl.describe())
	return nil
}

// Serve starts the server (unless started) and serves until ctx is done,
// then shuts down gracefully, giving in-flight requests up to 5 seconds.
// It returns nil after a shutdown caused by ctx, or the error that stopped a
// loop.
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
	case loopErr = <-s.loopErr:
	case <-s.stopped:
		return nil
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Shutdown(shutdownCtx)
	if loopErr != nil {
		return loopErr
	}
	return err
}

// Shutdown drains the server: PINGs are answered "draining" and new
// requests OVERLOADED while requests already handed to blocking handlers
// finish, until ctx is done; then the loops stop and every socket, ring,
// XDP attachment and pinned map is released. It returns ctx's error when
// in-flight requests were abandoned, nil otherwise.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.stopped
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()

	s.draining.Store(true)
	var err error
	if started {
		err = s.workers.drain(ctx, s.impl.owesReplies)
	}
	s.impl.stop()
	if cerr := s.workers.close(ctx); err == nil {
		err = cerr
	}
	close(s.stopped)
	return err
}

// Stats snapshots the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Backend: s.backend, Total: LoopStats{Queue: -1, Core: -1, Dropped: map[string]uint64{}}}
	if s.impl == nil {
		return st
	}
	st.Loops = s.impl.loopStats()
	for i := range st.Loops {
		st.Total.add(&st.Loops[i])
	}
	return st
}

// fail records the first loop failure so Serve can return it.
func (s *Server) fail(err error) {
	select {
	case s.loopErr <- err:
	default:
	}
}

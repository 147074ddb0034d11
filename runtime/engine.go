package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/runtime/internal/engine"
)

// Engine is a process's client side: a few pinned event loops (one by
// default), each owning an io_uring and unconnected UDP sockets (IPv4 and
// IPv6), multiplexing every endpoint the process calls. An endpoint — a
// server address — is an entry in a table (in-flight calls, RTT estimate,
// counters), not a thread or a socket, so a process calling a thousand
// servers has as many OS threads as it has loops.
//
// Dial uses the default engine of its caller's network namespace, made on
// first use (with DefaultEngineOptions); NewEngine makes another, for a
// process that wants its own settings (WithEngine on Dial picks it).
type Engine struct {
	cfg   engineConfig
	loops []*clientLoop
	pool  *engine.Pool // unused by client loops; engine.Loop wants one
	next  atomic.Uint32
	ids   atomic.Uint64

	mu        sync.Mutex
	endpoints map[tableKey]*endpoint
	sealers   map[ClientSealer]*clientSealing // WithClientSealer's halves on this engine's loops
	closed    bool

	lanes callerLanes // synchronous calls on their callers' threads (client_lane.go)
}

// EngineOption configures NewEngine.
type EngineOption func(*engineConfig) error

type engineConfig struct {
	loops       int
	cores       []int
	busyPoll    time.Duration
	callerSpin  time.Duration
	callerLanes int
	idleTimeout time.Duration
	recvBuffers int
	maxReply    int
	logger      *slog.Logger
}

// Engine defaults: one loop that sleeps in its ring when it has nothing to
// do (spinning pays only with a core to spare: on a 2-core machine beside
// a busy-polling server a spinning client loop left the caller no core and
// multiplied the round trip), 1,024 receive buffers of one datagram each.
const (
	defaultClientBusyPoll = 0
	defaultRecvBuffers    = 1024
	defaultMaxReply       = 8192
	defaultCallerLanes    = 2
)

func defaultEngineConfig() engineConfig {
	return engineConfig{loops: 1, busyPoll: defaultClientBusyPoll, callerLanes: defaultCallerLanes, callerSpin: -1, idleTimeout: 100 * time.Millisecond,
		recvBuffers: defaultRecvBuffers, maxReply: defaultMaxReply, logger: slog.Default()}
}

// WithClientLoops sets how many loops the engine runs (default 1); each
// endpoint belongs to one of them. n 0 means one per CPU.
func WithClientLoops(n int) EngineOption {
	return func(c *engineConfig) error {
		if n < 0 {
			return fmt.Errorf("runtime: WithClientLoops(%d): want ≥ 0", n)
		}
		if n == 0 {
			n = goruntime.NumCPU()
		}
		c.loops = n
		return nil
	}
}

// WithClientCores pins loop i to cores[i] (default: loop i on core
// (NumCPU−1−i) mod NumCPU, away from the cores servers pick first).
func WithClientCores(cores ...int) EngineOption {
	return func(c *engineConfig) error {
		for _, core := range cores {
			if core < 0 {
				return fmt.Errorf("runtime: WithClientCores: core %d negative", core)
			}
		}
		c.cores = append([]int(nil), cores...)
		return nil
	}
}

// WithClientBusyPoll sets how long a client loop spins on its ring after
// its last completion while calls are outstanding, instead of sleeping in
// io_uring_enter (default 0: never). Spinning costs a core while calls are
// in flight and saves a kernel wakeup per reply; 0 always sleeps.
func WithClientBusyPoll(window time.Duration) EngineOption {
	return func(c *engineConfig) error {
		if window < 0 {
			return fmt.Errorf("runtime: WithClientBusyPoll: negative window")
		}
		c.busyPoll = window
		return nil
	}
}

// WithCallerLanes sets how many synchronous UDP calls per address family
// may run at once on their callers' own threads (default 2; 0: none, every
// call goes through a loop). Such a call — Call, Ping or Oneway of a
// Client from Dial, without interceptors or a sealer — takes a free caller lane (a
// socket of the engine), writes its request and blocks in read(2) until
// the reply, with the same retransmission, DEADLINE and ATTEMPT as on the
// loop: the kernel wakes the caller directly, with no handoff to the
// loop's thread and back. A caller blocked there holds an OS thread,
// hence the small bound; a call that finds no lane free goes through the
// loop. A lane's caller notices a cancelled context or a closed Client
// within 2 ms.
func WithCallerLanes(n int) EngineOption {
	return func(c *engineConfig) error {
		if n < 0 || n > 64 {
			return fmt.Errorf("runtime: WithCallerLanes(%d): want 0..64", n)
		}
		c.callerLanes = n
		return nil
	}
}

// WithCallerSpin makes a synchronous Call poll for its completion for up
// to window before it blocks (0: block at once): through the loop it
// polls its channel, on a caller lane the socket. By default a call
// through the loop blocks at once, and one on a caller lane spins for
// twice the endpoint's smoothed RTT, at most 50 µs (autoSpin). A
// goroutine the loop wakes through a channel must wait for the Go
// scheduler to give it a processor, which on an idle core of a VM means waking that core
// (measured here at tens of µs, more than a round trip), and a thread
// blocked in read(2) must be woken by the kernel; a caller still running
// sees its reply at once, at the cost of spinning a core — worth it only
// where a core is free for it.
func WithCallerSpin(window time.Duration) EngineOption {
	return func(c *engineConfig) error {
		if window < 0 {
			return fmt.Errorf("runtime: WithCallerSpin: negative window")
		}
		c.callerSpin = window
		return nil
	}
}

// WithReceiveBuffers sizes each loop's provided-buffer rings: count
// buffers (a power of two, 1..32768) of maxReply bytes, the largest reply
// a UDP call can get (a larger one fails its call with ErrReplyTooLarge).
// Replies are copied out at once, so count bounds bursts, not outstanding
// calls.
func WithReceiveBuffers(count, maxReply int) EngineOption {
	return func(c *engineConfig) error {
		if count < 1 || count > 32768 || count&(count-1) != 0 {
			return fmt.Errorf("runtime: WithReceiveBuffers: count %d is not a power of two in 1..32768", count)
		}
		if maxReply < 64 || maxReply > 65535+64 {
			return fmt.Errorf("runtime: WithReceiveBuffers: maxReply %d outside 64..65599", maxReply)
		}
		c.recvBuffers, c.maxReply = count, maxReply
		return nil
	}
}

// WithEngineLogger sets where the engine logs (default slog.Default()).
func WithEngineLogger(l *slog.Logger) EngineOption {
	return func(c *engineConfig) error {
		if l == nil {
			return errors.New("runtime: WithEngineLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

var (
	defaultMu      sync.Mutex
	defaultEngines = map[string]*Engine{} // by network namespace
	// DefaultEngineOptions configure the default engines; set them before
	// the first Dial.
	DefaultEngineOptions []EngineOption
)

// DefaultEngine returns the default engine of the calling thread's
// network namespace, starting it on first use there. An engine's sockets
// live in the namespace it was made in, so a process whose goroutines
// call from several namespaces (a test, a node agent) gets one engine per
// namespace, and Dial calls from where its caller is, as a plain socket
// would.
func DefaultEngine() (*Engine, error) {
	ns, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		ns = "" // no procfs: one engine for the process
	}
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if e := defaultEngines[ns]; e != nil {
		return e, nil
	}
	e, err := NewEngine(DefaultEngineOptions...)
	if err != nil {
		return nil, err
	}
	if len(defaultEngines) == 0 {
		leak.AtExit(closeDefaultEngines)
	}
	defaultEngines[ns] = e
	return e, nil
}

// closeDefaultEngines closes every default engine (for leak checks).
func closeDefaultEngines() {
	defaultMu.Lock()
	engines := defaultEngines
	defaultEngines = map[string]*Engine{}
	defaultMu.Unlock()
	for _, e := range engines {
		e.Close()
	}
}

// NewEngine starts an engine's loops. It fails with the setup error when
// io_uring (with DeferTaskrun, multishot RECVMSG and provided-buffer
// rings) is not available: there is no fallback.
func NewEngine(opts ...EngineOption) (*Engine, error) {
	cfg := defaultEngineConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if len(cfg.cores) != 0 && len(cfg.cores) != cfg.loops {
		return nil, fmt.Errorf("runtime: WithClientCores gives %d cores for %d loops", len(cfg.cores), cfg.loops)
	}
	e := &Engine{cfg: cfg, endpoints: map[tableKey]*endpoint{}}
	if err := e.lanes.open(cfg.callerLanes, cfg.maxReply); err != nil {
		return nil, err
	}
	e.pool = engine.NewPool(nil, 0, 1)
	warn := engine.NewWarnings(cfg.logger)
	for i := 0; i < cfg.loops; i++ {
		core := (goruntime.NumCPU() - 1 - i%goruntime.NumCPU() + goruntime.NumCPU()) % goruntime.NumCPU()
		if len(cfg.cores) > 0 {
			core = cfg.cores[i]
		}
		cl, err := newClientLoop(e, i, core, warn)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.loops = append(e.loops, cl)
		if err := cl.loop.Start(); err != nil {
			e.Close()
			return nil, fmt.Errorf("runtime: client engine: %w", err)
		}
	}
	return e, nil
}

// Close stops the engine's loops: every call still in flight fails with
// ErrClientClosed (completions nobody received are counted in
// EngineStats.Undelivered), and every socket and ring is released. It
// waits for the loops to exit.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClientClosed
	}
	e.closed = true
	e.mu.Unlock()
	e.lanes.close()
	for _, cl := range e.loops {
		cl.close()
	}
	for _, cl := range e.loops {
		if cl.loop.Started() {
			<-cl.loop.Exited()
		} else {
			cl.loop.Discard()
		}
	}
	return nil
}

// EngineStats are an engine's counters since NewEngine.
type EngineStats struct {
	// Endpoints is how many endpoints the engine holds.
	Endpoints int
	// Delayed counts completions whose Done channel was full when the
	// call ended: the loop kept them and delivered them later, without
	// waiting. Undelivered counts those still undelivered when the engine
	// (or the Client) closed: they were dropped, never blocking the loop.
	Delayed, Undelivered uint64
	// LaneCalls counts the calls that ran on their callers' threads (see
	// WithCallerLanes) rather than through a loop.
	LaneCalls uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() EngineStats {
	e.mu.Lock()
	st := EngineStats{Endpoints: len(e.endpoints), LaneCalls: e.lanes.calls.Load()}
	e.mu.Unlock()
	for _, cl := range e.loops {
		st.Delayed += cl.delayed.Load()
		st.Undelivered += cl.undelivered.Load()
	}
	return st
}

// endpointKey names an endpoint: a transport and an address.
type endpointKey struct {
	tcp  bool
	addr netip.AddrPort
}

// tableKey is an endpoint's key in the engine's table: an address may
// have an entry on more than one loop (a service's endpoints all live on
// its loop, so that a call can move between them).
type tableKey struct {
	endpointKey
	loop int
}

// pickLoop chooses the loop of a new endpoint or service, round robin.
func (e *Engine) pickLoop() *clientLoop { return e.loops[int(e.next.Add(1)-1)%len(e.loops)] }

// acquire returns the endpoint for key on whichever loop has it, making
// it on the next loop on first use, and counts one more user of it.
func (e *Engine) acquire(key endpointKey) (*endpoint, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClientClosed
	}
	for i := range e.loops {
		if ep := e.endpoints[tableKey{key, i}]; ep != nil {
			ep.refs++
			return ep, nil
		}
	}
	return e.acquireLocked(key, e.pickLoop()), nil
}

// acquireOn is acquire on a given loop.
func (e *Engine) acquireOn(key endpointKey, cl *clientLoop) (*endpoint, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClientClosed
	}
	return e.acquireLocked(key, cl), nil
}

func (e *Engine) acquireLocked(key endpointKey, cl *clientLoop) *endpoint {
	tk := tableKey{key, cl.idx}
	ep := e.endpoints[tk]
	if ep == nil {
		ep = newEndpoint(key, cl)
		e.endpoints[tk] = ep
	}
	ep.refs++
	return ep
}

// release drops one user of ep; the last one removes it from the table
// (the loop forgets it once its calls are done).
func (e *Engine) release(ep *endpoint) {
	e.mu.Lock()
	ep.refs--
	last := ep.refs == 0
	if last {
		delete(e.endpoints, tableKey{ep.key, ep.loop.idx})
	}
	e.mu.Unlock()
	if last {
		ep.loop.push(loopOp{kind: opForget, ep: ep})
	}
}

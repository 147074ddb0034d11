package runtime

import (
	"fmt"
	"log/slog"
	"time"
)

// Backend names the data path a Server runs on.
type Backend int

const (
	// BackendAuto picks BackendXSK where the interface, the kernel and the
	// process's privileges allow it, and BackendUring otherwise.
	BackendAuto Backend = iota
	// BackendXSK serves from AF_XDP sockets steered by the zerohop XDP
	// program, one socket and one event loop per queue.
	BackendXSK
	// BackendUring serves from SO_REUSEPORT kernel UDP sockets driven by
	// io_uring, one socket and one event loop per queue entry.
	BackendUring
)

func (b Backend) String() string {
	switch b {
	case BackendAuto:
		return "auto"
	case BackendXSK:
		return "xsk"
	case BackendUring:
		return "uring"
	}
	return fmt.Sprintf("Backend(%d)", int(b))
}

// ParseBackend turns "auto", "xsk" or "uring" into a Backend.
func ParseBackend(s string) (Backend, error) {
	for _, b := range []Backend{BackendAuto, BackendXSK, BackendUring} {
		if b.String() == s {
			return b, nil
		}
	}
	return 0, fmt.Errorf("runtime: unknown backend %q (want auto, xsk or uring)", s)
}

// Option configures Listen.
type Option func(*config) error

type config struct {
	iface         string
	queues        []int // nil: every RX queue (AF_XDP), one loop (kernel sockets)
	cores         []int
	backend       Backend
	busyPoll      time.Duration
	workers       int
	workQueue     int
	frames        int
	logger        *slog.Logger
	pinMaps       bool
	idleTimeout   time.Duration
	tcp           bool
	reusePort     bool
	shutdownGrace time.Duration
	poison        bool
	middleware    []Middleware
	admission     []Middleware
	registry      Registry
	service       string
	sealer        ServerSealer
	drainDelay    time.Duration
}

// DefaultBusyPoll is how long a loop spins after its last packet before it
// sleeps, unless WithBusyPoll says otherwise. On this project's 2-core VM a
// closed loop of 64 outstanding calls leaves gaps of ~0.4 ms between
// batches; a shorter window put a sleep and a wakeup (and, on a shared core,
// a scheduler slice) into most round trips and multiplied p99 by ~5.
const DefaultBusyPoll = time.Millisecond

// DefaultShutdownGrace is how long Serve lets in-flight requests finish
// when its context ends, unless WithShutdownGrace says otherwise.
const DefaultShutdownGrace = 5 * time.Second

func defaultConfig() config {
	return config{
		busyPoll:      DefaultBusyPoll,
		workers:       4,
		workQueue:     1024,
		frames:        16384,
		logger:        slog.Default(),
		idleTimeout:   100 * time.Millisecond,
		shutdownGrace: DefaultShutdownGrace,
	}
}

// WithInterface names the network interface to serve on. The XSK backend
// needs it (without it, the interface holding the listen address); the
// uring backend ignores it. An interface that does not exist is an error,
// never a reason to fall back.
func WithInterface(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("runtime: WithInterface: empty interface name")
		}
		c.iface = name
		return nil
	}
}

// WithQueues restricts the RX queues the XSK backend serves (default:
// every RX queue of the interface, as the kernel reports it, that no other
// zerohop server holds: AF_XDP allows one process per queue, so servers of
// one interface divide its queues). A listed queue the interface lacks is
// an error; one another server holds makes XSK unavailable (BackendAuto
// falls back, with a WARN). Datagrams for the port arriving on other
// queues are not lost: the steering program passes them to the kernel,
// where the server's kernel sockets answer them (counted as Served["udp"]).
// With the uring backend each entry is one SO_REUSEPORT socket and loop
// (default: one).
func WithQueues(queues ...int) Option {
	return func(c *config) error {
		if len(queues) == 0 {
			return fmt.Errorf("runtime: WithQueues: no queues")
		}
		seen := map[int]bool{}
		for _, q := range queues {
			if q < 0 || seen[q] {
				return fmt.Errorf("runtime: WithQueues: queue %d negative or repeated", q)
			}
			seen[q] = true
		}
		c.queues = append([]int(nil), queues...)
		return nil
	}
}

// WithCores pins the loop of queues[i] to cores[i] (WithQueues must list
// as many queues). Default: the CPU the queue's interrupt is affine to
// where the NIC has per-queue interrupts, else queue mod NumCPU. Queues
// given the same core share one loop.
func WithCores(cores ...int) Option {
	return func(c *config) error {
		for _, core := range cores {
			if core < 0 {
				return fmt.Errorf("runtime: WithCores: core %d negative", core)
			}
		}
		c.cores = append([]int(nil), cores...)
		return nil
	}
}

// WithBackend forces a backend. Forcing BackendXSK where it cannot run makes
// Listen fail with the reason.
func WithBackend(b Backend) Option {
	return func(c *config) error {
		if b < BackendAuto || b > BackendUring {
			return fmt.Errorf("runtime: WithBackend: %v", b)
		}
		c.backend = b
		return nil
	}
}

// WithBusyPoll sets how long a loop spins on its rings after the last
// packet before it sleeps in io_uring_enter. Spinning costs a core while
// busy and saves the ~30 µs wakeup per round trip; 0 always sleeps.
func WithBusyPoll(window time.Duration) Option {
	return func(c *config) error {
		if window < 0 {
			return fmt.Errorf("runtime: WithBusyPoll: negative window")
		}
		c.busyPoll = window
		return nil
	}
}

// WithWorkers sizes the pool that runs HandleBlocking handlers: n
// goroutines and a queue of queueLen requests; a request arriving at a full
// queue is answered OVERLOADED.
func WithWorkers(n, queueLen int) Option {
	return func(c *config) error {
		if n < 1 || queueLen < 1 {
			return fmt.Errorf("runtime: WithWorkers(%d, %d): both must be positive", n, queueLen)
		}
		c.workers, c.workQueue = n, queueLen
		return nil
	}
}

// WithFrames sets the UMEM size of the XSK backend in frames (shared by all
// queues). Small UMEMs drop bursts when a loop is preempted.
func WithFrames(n int) Option {
	return func(c *config) error {
		if n < 64 || n&(n-1) != 0 {
			return fmt.Errorf("runtime: WithFrames(%d): want a power of two ≥ 64", n)
		}
		c.frames = n
		return nil
	}
}

// WithLogger sets where the server logs its backend choice, its queue→core
// map and handler panics. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("runtime: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithPinnedMaps pins the XDP program's maps under
// /sys/fs/bpf/zerohop/<iface>/ while the server runs, so `zerohop stat`
// and ACL edits can reach them; they are unpinned on Shutdown.
func WithPinnedMaps() Option {
	return func(c *config) error {
		c.pinMaps = true
		return nil
	}
}

// WithTCP serves the stream transport too: a TCP listener on the same
// address and port, on both backends, answering the same handlers. Off by
// default, so a server that serves only UDP never touches the TCP port.
func WithTCP() Option {
	return func(c *config) error {
		c.tcp = true
		return nil
	}
}

// WithReusePort lets this server share its address with other zerohop
// servers that opt in too (the kernel spreads datagrams among their kernel
// sockets). By default a second server on an address fails with an error
// wrapping ErrAddrInUse instead of silently taking part of the traffic.
// The XDP program steers a port to one server's AF_XDP sockets only: on
// the XSK backend the first server keeps the steered traffic and the
// others share the address on the kernel path (BackendAuto falls back to
// io_uring sockets for them, with a WARN).
func WithReusePort() Option {
	return func(c *config) error {
		c.reusePort = true
		return nil
	}
}

// WithShutdownGrace sets how long Serve lets in-flight requests finish
// once its context ends (default DefaultShutdownGrace).
func WithShutdownGrace(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("runtime: WithShutdownGrace: negative duration %v", d)
		}
		c.shutdownGrace = d
		return nil
	}
}

// WithPoisonedBuffers is for tests: every receive buffer is overwritten
// with 0xDB bytes as soon as its handler returns, so a handler that keeps
// Payload (or any slice from a Request) past its return sees garbage at
// once and deterministically, not only when the buffer happens to be
// reused; and at Shutdown the receive memory (provided-buffer rings, the
// UMEM) is poisoned and left mapped until the process exits, so such a
// slice read after the server is gone still reads garbage instead of
// faulting. It costs a memset per request and leaks that memory at
// Shutdown: never in production.
func WithPoisonedBuffers() Option {
	return func(c *config) error {
		c.poison = true
		return nil
	}
}

// WithMiddleware wraps every method's handler in mws, the first
// outermost. They run where the handler runs: on the loop for Handle, on
// a worker for HandleBlocking. This is the one place their order is set.
func WithMiddleware(mws ...Middleware) Option {
	return func(c *config) error {
		for _, mw := range mws {
			if mw == nil {
				return fmt.Errorf("runtime: WithMiddleware: nil middleware")
			}
		}
		c.middleware = append(c.middleware, mws...)
		return nil
	}
}

// WithAdmission installs admission middleware: mws run on the loop, the
// first outermost, before a request is handed to its handler — and for
// blocking methods before it takes a worker's queue slot — so rate
// limits, load shedding and authorization refuse work early and cheaply.
// Calling next admits the request (the admission chain's innermost
// handler does nothing else); answering without calling it refuses it.
// Admission runs before WithMiddleware's chain.
func WithAdmission(mws ...Middleware) Option {
	return func(c *config) error {
		for _, mw := range mws {
			if mw == nil {
				return fmt.Errorf("runtime: WithAdmission: nil middleware")
			}
		}
		c.admission = append(c.admission, mws...)
		return nil
	}
}

// WithRegistry announces the server as an endpoint of service to reg once
// it serves, and withdraws the announcement first thing on Shutdown, so
// callers stop picking it before it drains.
func WithRegistry(reg Registry, service string) Option {
	return func(c *config) error {
		if reg == nil || service == "" {
			return fmt.Errorf("runtime: WithRegistry: need a registry and a service name")
		}
		c.registry, c.service = reg, service
		return nil
	}
}

// WithDrainDelay makes Shutdown keep draining for at least d after it
// withdrew the registration (WithRegistry): PINGs are answered draining
// and requests OVERLOADED for that long before the sockets close, so that
// clients learn from discovery and from their health probes that the
// server is going, and stop picking it, before its port is gone. Bounded
// by Shutdown's context. Default 0: close as soon as in-flight requests
// are done.
func WithDrainDelay(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("runtime: WithDrainDelay(%v): negative; give 0 for none", d)
		}
		c.drainDelay = d
		return nil
	}
}

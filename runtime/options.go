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
	iface       string
	queues      []int
	cores       []int
	backend     Backend
	busyPoll    time.Duration
	workers     int
	workQueue   int
	frames      int
	logger      *slog.Logger
	pinMaps     bool
	idleTimeout time.Duration
}

// DefaultBusyPoll is how long a loop spins after its last packet before it
// sleeps, unless WithBusyPoll says otherwise. On this project's 2-core VM a
// closed loop of 64 outstanding calls leaves gaps of ~0.4 ms between
// batches; a shorter window put a sleep and a wakeup (and, on a shared core,
// a scheduler slice) into most round trips and multiplied p99 by ~5.
const DefaultBusyPoll = time.Millisecond

func defaultConfig() config {
	return config{
		queues:      []int{0},
		busyPoll:    DefaultBusyPoll,
		workers:     4,
		workQueue:   1024,
		frames:      16384,
		logger:      slog.Default(),
		idleTimeout: 100 * time.Millisecond,
	}
}

// WithInterface names the network interface to serve on. The XSK backend
// needs it; the uring backend ignores it.
func WithInterface(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("runtime: WithInterface: empty interface name")
		}
		c.iface = name
		return nil
	}
}

// WithQueues lists the RX queues to serve, one event loop each. With the
// uring backend each entry is one SO_REUSEPORT socket and loop. Default: 0.
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

// WithCores pins the loop of queues[i] to cores[i]. Default: queue i's loop
// on core i mod NumCPU.
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

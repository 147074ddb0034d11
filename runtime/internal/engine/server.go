package engine

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Config is what the loops of one server need to know.
type Config struct {
	Logger *slog.Logger
	// BusyPoll is how long a loop spins after its last work before it
	// sleeps; IdleTimeout bounds each sleep.
	BusyPoll, IdleTimeout time.Duration
	// Workers and WorkQueue size the blocking handlers' pool.
	Workers, WorkQueue int
	// Loops is how many loops serve (for the per-loop method counters).
	Loops int
	// Poison overwrites each request's bytes once its handler returned.
	Poison bool
}

// Server is the state every loop and worker of one server shares.
type Server struct {
	Config
	Methods  *MethodTable
	Pool     *Pool
	Warn     *Warnings
	Draining atomic.Bool

	// ctx ends at shutdown; blocking handlers' contexts derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	failed chan error
}

// NewServer makes the shared state; nothing runs until loops start.
func NewServer(cfg Config) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Config: cfg, Methods: NewMethodTable(cfg.Loops), Warn: NewWarnings(cfg.Logger),
		ctx: ctx, cancel: cancel, failed: make(chan error, 1)}
	s.Pool = NewPool(s, cfg.Workers, cfg.WorkQueue)
	return s
}

// Context ends when the server shuts down.
func (s *Server) Context() context.Context { return s.ctx }

// Cancel ends Context, telling blocking handlers to give up.
func (s *Server) Cancel() { s.cancel() }

// Fail records the first loop failure.
func (s *Server) Fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

// Failed delivers the first loop failure.
func (s *Server) Failed() <-chan error { return s.failed }

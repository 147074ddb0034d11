package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/zerohop/zerohop/mesh/discovery"
)

// Defaults of the options below.
const (
	DefaultTTL            = 3 * time.Second
	DefaultRequestTimeout = 2 * time.Second
	DefaultProbeInterval  = time.Second
)

// Option configures a Registry or a Builder; each says which it is for
// and the other ignores it.
type Option func(*config)

type config struct {
	prefix         string
	ttl            time.Duration
	requestTimeout time.Duration
	probeInterval  time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	logger         *slog.Logger
}

func newConfig(opts []Option) config {
	c := config{prefix: DefaultPrefix, ttl: DefaultTTL, requestTimeout: DefaultRequestTimeout,
		probeInterval: DefaultProbeInterval, logger: slog.Default()}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithPrefix sets the key prefix (default DefaultPrefix). Registry and
// Builder.
func WithPrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithTTL sets the lease TTL (default DefaultTTL), rounded up to whole
// seconds. Registry.
func WithTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// WithRequestTimeout bounds each request to etcd (default
// DefaultRequestTimeout). Registry and Builder.
func WithRequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// WithProbeInterval sets how often a resolver checks that etcd answers
// (default DefaultProbeInterval). Builder.
func WithProbeInterval(d time.Duration) Option { return func(c *config) { c.probeInterval = d } }

// WithBackoff sets the bounds of discovery.Backoff for retries (defaults
// discovery.DefaultBackoffBase and DefaultBackoffMax). Registry and
// Builder.
func WithBackoff(base, ceiling time.Duration) Option {
	return func(c *config) { c.backoffBase, c.backoffMax = base, ceiling }
}

// WithLogger sets where failed attempts are logged (WARN) and
// registrations (INFO); default slog.Default(). Registry.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// check names the option that is wrong and how to fix it.
func (c *config) check() error {
	switch {
	case c.prefix == "":
		return errors.New("etcd: WithPrefix(\"\"): the prefix must not be empty (default " + DefaultPrefix + ")")
	case c.ttl <= 0:
		return fmt.Errorf("etcd: WithTTL(%v): the lease TTL must be positive (default %v)", c.ttl, DefaultTTL)
	case c.requestTimeout <= 0:
		return fmt.Errorf("etcd: WithRequestTimeout(%v): must be positive (default %v)", c.requestTimeout, DefaultRequestTimeout)
	case c.probeInterval <= 0:
		return fmt.Errorf("etcd: WithProbeInterval(%v): must be positive (default %v)", c.probeInterval, DefaultProbeInterval)
	case c.backoffBase < 0 || c.backoffMax < 0 || (c.backoffMax > 0 && c.backoffBase > c.backoffMax):
		return fmt.Errorf("etcd: WithBackoff(%v, %v): want 0 ≤ base ≤ max (0 for the defaults)", c.backoffBase, c.backoffMax)
	case c.logger == nil:
		return errors.New("etcd: WithLogger(nil): give a logger, or leave the option out for slog.Default()")
	}
	return nil
}

// ttlSeconds is the TTL as etcd takes it: whole seconds, rounded up.
func (c *config) ttlSeconds() int64 { return int64((c.ttl + time.Second - 1) / time.Second) }

func (c *config) backoff() discovery.Backoff {
	return discovery.Backoff{Base: c.backoffBase, Max: c.backoffMax}
}

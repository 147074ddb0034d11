package health

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Config (see the package doc for where they come from).
const (
	DefaultInterval               = time.Second
	DefaultJitter                 = 0.2
	DefaultTimeout                = 500 * time.Millisecond
	DefaultUnhealthyThreshold     = 3
	DefaultHealthyThreshold       = 2
	DefaultConsecutiveFailures    = 5
	DefaultSuccessRateWindow      = time.Second
	DefaultSuccessRateMinRequests = 20
	DefaultSuccessRateMin         = 0.5
	DefaultBaseEjection           = time.Second
	DefaultMaxEjection            = 30 * time.Second
	DefaultMaxEjectedFraction     = 0.1
	DefaultProbationTimeout       = 2 * time.Second
	// decayInterval is how long an endpoint stays healthy for its count of
	// ejections to drop by one (Envoy's outlier detection interval).
	decayInterval = 10 * time.Second
)

// Config configures Wrap. A zero field takes its default; a negative
// Interval turns active probes off, a negative ConsecutiveFailures or
// SuccessRateWindow that detection.
type Config struct {
	// Active probes: every Interval ± Jitter×Interval, failing after
	// Timeout; out after UnhealthyThreshold failures in a row, back after
	// HealthyThreshold PONGs in a row.
	Interval           time.Duration
	Jitter             float64
	Timeout            time.Duration
	UnhealthyThreshold int
	HealthyThreshold   int

	// Passive detection: ejected after ConsecutiveFailures failures in a
	// row, or a success rate under SuccessRateMin over SuccessRateWindow
	// with at least SuccessRateMinRequests attempts.
	ConsecutiveFailures    int
	SuccessRateWindow      time.Duration
	SuccessRateMinRequests int
	SuccessRateMin         float64

	// Ejections last min(MaxEjection, BaseEjection × 2ⁿ⁻¹) for the n-th;
	// at most MaxEjectedFraction of the endpoints (at least one) are out
	// at a time; a trial call gets ProbationTimeout to end.
	BaseEjection       time.Duration
	MaxEjection        time.Duration
	MaxEjectedFraction float64
	ProbationTimeout   time.Duration

	// Logger gets a line for every ejection and return (INFO) and for
	// endpoints going unhealthy or draining (INFO); default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig is the configuration Wrap uses for zero fields.
func DefaultConfig() Config {
	return Config{
		Interval: DefaultInterval, Jitter: DefaultJitter, Timeout: DefaultTimeout,
		UnhealthyThreshold: DefaultUnhealthyThreshold, HealthyThreshold: DefaultHealthyThreshold,
		ConsecutiveFailures: DefaultConsecutiveFailures, SuccessRateWindow: DefaultSuccessRateWindow,
		SuccessRateMinRequests: DefaultSuccessRateMinRequests, SuccessRateMin: DefaultSuccessRateMin,
		BaseEjection: DefaultBaseEjection, MaxEjection: DefaultMaxEjection,
		MaxEjectedFraction: DefaultMaxEjectedFraction, ProbationTimeout: DefaultProbationTimeout,
		Logger: slog.Default(),
	}
}

// withDefaults fills zero fields and checks the rest, naming the field at
// fault.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.Interval, d.Interval)
	setDur(&c.Timeout, d.Timeout)
	setDur(&c.SuccessRateWindow, d.SuccessRateWindow)
	setDur(&c.BaseEjection, d.BaseEjection)
	setDur(&c.MaxEjection, d.MaxEjection)
	setDur(&c.ProbationTimeout, d.ProbationTimeout)
	setInt(&c.UnhealthyThreshold, d.UnhealthyThreshold)
	setInt(&c.HealthyThreshold, d.HealthyThreshold)
	setInt(&c.ConsecutiveFailures, d.ConsecutiveFailures)
	setInt(&c.SuccessRateMinRequests, d.SuccessRateMinRequests)
	if c.Jitter == 0 {
		c.Jitter = d.Jitter
	}
	if c.SuccessRateMin == 0 {
		c.SuccessRateMin = d.SuccessRateMin
	}
	if c.MaxEjectedFraction == 0 {
		c.MaxEjectedFraction = d.MaxEjectedFraction
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	switch {
	case c.Jitter < 0 || c.Jitter >= 1:
		return c, fmt.Errorf("health: Config.Jitter %v: want a fraction of the interval in [0, 1) (default %v)", c.Jitter, DefaultJitter)
	case c.Interval > 0 && (c.Timeout < 0 || c.Timeout > c.Interval):
		return c, fmt.Errorf("health: Config.Timeout %v: want 0 < Timeout ≤ Interval (%v)", c.Timeout, c.Interval)
	case c.UnhealthyThreshold < 0 || c.HealthyThreshold < 0:
		return c, fmt.Errorf("health: Config.UnhealthyThreshold %d, HealthyThreshold %d: want ≥ 1 (0 for the defaults %d, %d)",
			c.UnhealthyThreshold, c.HealthyThreshold, DefaultUnhealthyThreshold, DefaultHealthyThreshold)
	case c.SuccessRateMin < 0 || c.SuccessRateMin > 1:
		return c, fmt.Errorf("health: Config.SuccessRateMin %v: want a rate in (0, 1] (default %v)", c.SuccessRateMin, DefaultSuccessRateMin)
	case c.SuccessRateMinRequests < 0:
		return c, fmt.Errorf("health: Config.SuccessRateMinRequests %d: want ≥ 1 (default %d)", c.SuccessRateMinRequests, DefaultSuccessRateMinRequests)
	case c.BaseEjection < 0 || c.MaxEjection < c.BaseEjection:
		return c, fmt.Errorf("health: Config.BaseEjection %v, MaxEjection %v: want 0 < BaseEjection ≤ MaxEjection", c.BaseEjection, c.MaxEjection)
	case c.MaxEjectedFraction < 0 || c.MaxEjectedFraction > 1:
		return c, fmt.Errorf("health: Config.MaxEjectedFraction %v: want a fraction in (0, 1] (default %v)", c.MaxEjectedFraction, DefaultMaxEjectedFraction)
	case c.ProbationTimeout < 0:
		return c, fmt.Errorf("health: Config.ProbationTimeout %v: want > 0 (default %v)", c.ProbationTimeout, DefaultProbationTimeout)
	}
	return c, nil
}

// ejectionFor is how long the n-th ejection (n ≥ 1) lasts.
func (c *Config) ejectionFor(n int) time.Duration {
	d := c.BaseEjection
	for i := 1; i < n && d < c.MaxEjection; i++ {
		d *= 2
	}
	return min(d, c.MaxEjection)
}

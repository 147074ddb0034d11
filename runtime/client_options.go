package runtime

import (
	"fmt"
	"time"
)

// ClientOption configures Dial.
type ClientOption func(*clientConfig) error

type clientConfig struct {
	initialRTO   time.Duration
	minRTO       time.Duration
	maxRTO       time.Duration
	maxAttempts  int // 0: retransmit until the call's context ends
	caller       string
	interceptors []Interceptor
	tracer       CallTracer
	engine       *Engine
	sealer       ClientSealer

	// DialService only.
	resolver       ResolverBuilder
	balancer       BalancerBuilder
	tcp            bool
	retryRatio     float64
	retryMinPerSec float64
}

// Client defaults: before the first RTT sample the first retransmission
// comes after 20 ms; afterwards the timeout follows the measured RTT
// (never under minRTO), doubling per retransmission up to 1 s; 8 copies
// in all before ErrNoReply.
const (
	defaultInitialRTO  = 20 * time.Millisecond
	defaultMaxRTO      = time.Second
	defaultMaxAttempts = 8
	// The retry budget of a DialService client (Finagle's RetryBudget
	// defaults): failovers ≤ 20 % of calls over 10 s, plus 10 per second.
	defaultRetryRatio     = 0.2
	defaultRetryMinPerSec = 10
	// defaultMinRTO bounds the measured timeout from below: a busy 2-core
	// machine delays replies by a scheduler slice (a few ms) now and then,
	// and a retransmission before that is wasted work for both sides.
	// Below ~1 ms of RTT the floor decides; the measurement matters for
	// the long paths (another zone, another region).
	defaultMinRTO = 5 * time.Millisecond
)

func defaultClientConfig() clientConfig {
	return clientConfig{initialRTO: defaultInitialRTO, minRTO: defaultMinRTO, maxRTO: defaultMaxRTO, maxAttempts: defaultMaxAttempts,
		retryRatio: defaultRetryRatio, retryMinPerSec: defaultRetryMinPerSec}
}

// WithRetransmission sets how a Client retransmits a request that got no
// reply: initialRTO is the timeout before the endpoint's round-trip time
// has been measured (afterwards it is SRTT + 4·RTTVAR, at least the
// WithMinRTO floor),
// each later wait of a call is twice the previous one up to maxRTO, and
// after maxAttempts copies in all (the first included) and one more wait
// the call fails with ErrNoReply. maxAttempts 0 retransmits until the
// call's context ends; 1 never retransmits. Every copy carries the same
// request id, so the server may run a request more than once
// (at-least-once semantics).
func WithRetransmission(initialRTO, maxRTO time.Duration, maxAttempts int) ClientOption {
	return func(c *clientConfig) error {
		if initialRTO <= 0 || maxRTO < initialRTO || maxAttempts < 0 {
			return fmt.Errorf("runtime: WithRetransmission(%v, %v, %d): want 0 < initialRTO ≤ maxRTO and maxAttempts ≥ 0",
				initialRTO, maxRTO, maxAttempts)
		}
		c.initialRTO, c.maxRTO, c.maxAttempts = initialRTO, maxRTO, maxAttempts
		return nil
	}
}

// WithMinRTO raises the floor of the measured retransmission timeout
// (default 5 ms): for servers whose handlers take longer than their
// network round trip, which the RTT estimate cannot know before the
// first slow reply.
func WithMinRTO(d time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if d <= 0 {
			return fmt.Errorf("runtime: WithMinRTO(%v): want > 0", d)
		}
		c.minRTO = d
		return nil
	}
}

// WithCaller names the calling service; the name travels in every
// request's CALLER tag (a label for the server's telemetry and policies,
// not an authenticated identity). At most 255 bytes.
func WithCaller(service string) ClientOption {
	return func(c *clientConfig) error {
		if len(service) > 255 {
			return fmt.Errorf("runtime: WithCaller: %d bytes, at most 255", len(service))
		}
		c.caller = service
		return nil
	}
}

// WithInterceptors installs interceptors (see Interceptor), run in the
// order given.
func WithInterceptors(ics ...Interceptor) ClientOption {
	return func(c *clientConfig) error {
		for _, ic := range ics {
			if ic == nil {
				return fmt.Errorf("runtime: WithInterceptors: nil interceptor")
			}
		}
		c.interceptors = append(c.interceptors, ics...)
		return nil
	}
}

// WithCallTracer traces every call with t (see CallTracer); the trace
// context travels to the server in the TRACE and TRACESTATE tags.
func WithCallTracer(t CallTracer) ClientOption {
	return func(c *clientConfig) error {
		if t == nil {
			return fmt.Errorf("runtime: WithCallTracer: nil tracer")
		}
		c.tracer = t
		return nil
	}
}

// WithEngine makes the Client use e instead of the default engine.
func WithEngine(e *Engine) ClientOption {
	return func(c *clientConfig) error {
		if e == nil {
			return fmt.Errorf("runtime: WithEngine: nil engine")
		}
		c.engine = e
		return nil
	}
}

// WithResolver says where a DialService client finds the service's
// endpoints (required by DialService, ignored by Dial).
func WithResolver(b ResolverBuilder) ClientOption {
	return func(c *clientConfig) error {
		if b == nil {
			return fmt.Errorf("runtime: WithResolver: nil resolver")
		}
		c.resolver = b
		return nil
	}
}

// WithBalancer says how a DialService client picks an endpoint per
// attempt (default: round robin over the serving endpoints).
func WithBalancer(b BalancerBuilder) ClientOption {
	return func(c *clientConfig) error {
		if b == nil {
			return fmt.Errorf("runtime: WithBalancer: nil balancer")
		}
		c.balancer = b
		return nil
	}
}

// WithStreamTransport makes a DialService client call its endpoints over
// the stream transport (TCP; the servers must serve it, WithTCP) instead
// of UDP.
func WithStreamTransport() ClientOption {
	return func(c *clientConfig) error {
		c.tcp = true
		return nil
	}
}

// WithRetryBudget bounds a DialService client's failovers: over a sliding
// 10 s window, retries ≤ ratio × calls + minPerSec × 10 (default 0.2 and
// 10, Finagle's RetryBudget). 0, 0 disables failover.
func WithRetryBudget(ratio, minPerSec float64) ClientOption {
	return func(c *clientConfig) error {
		if ratio < 0 || minPerSec < 0 {
			return fmt.Errorf("runtime: WithRetryBudget(%v, %v): want ≥ 0", ratio, minPerSec)
		}
		c.retryRatio, c.retryMinPerSec = ratio, minPerSec
		return nil
	}
}

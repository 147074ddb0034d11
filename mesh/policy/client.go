package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/breaker"
	"github.com/zerohop/zerohop/runtime"
)

// ClientConfig describes a client's policies.
type ClientConfig struct {
	// Breaker tunes the circuit breakers (the zero value is the SRE book's
	// formula, K = 1.5, over go-zero's 10 s window).
	Breaker breaker.Options
	// Now is the clock, monotonic nanoseconds; nil means the package's.
	// Tests pass a fake one.
	Now func() int64
}

// Client holds a client's policies as runtime.Interceptors, in the order
// they run for each attempt (Interceptors).
type Client struct {
	now      func() int64
	breakers *breaker.Registry
}

// NewClient builds a Client.
func NewClient(cfg ClientConfig) *Client {
	c := &Client{now: cfg.Now, breakers: breaker.NewRegistry(cfg.Breaker)}
	if c.now == nil {
		c.now = nanotime
	}
	return c
}

// Interceptors returns the client chain, in order: the deadline check
// (never send an attempt whose deadline has passed), then the circuit
// breaker (drop locally what the endpoint has been refusing). Pass them to
// the client's WithInterceptors.
func (c *Client) Interceptors() []runtime.Interceptor {
	return []runtime.Interceptor{deadlineInterceptor{}, (*breakerInterceptor)(c)}
}

// Breakers is the registry of the client's breakers (for stats, and for
// Forget when discovery removes an endpoint).
func (c *Client) Breakers() *breaker.Registry { return c.breakers }

// ErrDeadline refuses an attempt whose call's deadline has passed: it is
// not sent. It wraps context.DeadlineExceeded.
var ErrDeadline = fmt.Errorf("policy: the call's deadline passed before this attempt could be sent: %w", context.DeadlineExceeded)

type deadlineInterceptor struct{}

// Before refuses an attempt with less than the DEADLINE tag's resolution
// (a microsecond) left, as deadline.Budget does.
func (deadlineInterceptor) Before(a *runtime.Attempt) error {
	if !a.Deadline.IsZero() && time.Until(a.Deadline) < time.Microsecond {
		return ErrDeadline
	}
	return nil
}

func (deadlineInterceptor) After(*runtime.Attempt, *runtime.AttemptResult) {}

type breakerInterceptor Client

// Before lets the attempt go, or fails it with breaker.ErrBreakerOpen
// without sending it.
func (c *breakerInterceptor) Before(a *runtime.Attempt) error {
	return c.breakers.Get(a.Endpoint, a.MethodID).Allow(c.now())
}

// After marks the attempt's end: OVERLOADED, RATE_LIMITED,
// DEADLINE_EXCEEDED and no answer count against the endpoint, any other
// answer for it. An attempt that ended because the caller gave up
// (its context cancelled) says nothing about the endpoint: the runtime
// calls no After for it, and an error wrapping context.Canceled is not
// marked either.
func (c *breakerInterceptor) After(a *runtime.Attempt, r *runtime.AttemptResult) {
	if !r.Answered && errors.Is(r.Err, context.Canceled) {
		return
	}
	c.breakers.Get(a.Endpoint, a.MethodID).Mark(c.now(), breaker.Classify(r.Status, r.Answered))
}

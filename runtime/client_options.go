package runtime

import (
	"fmt"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// ClientOption configures Dial.
type ClientOption func(*clientConfig) error

type clientConfig struct {
	initialRTO  time.Duration
	maxRTO      time.Duration
	maxAttempts int // 0: retransmit until the call's context ends

	replyBuffers    int
	maxReplyPayload int

	busyPoll time.Duration
}

// Client defaults: the first retransmission after 20 ms, doubling up to 1 s,
// 8 copies in all (about 3.3 s before ErrNoReply), 128 reply buffers holding
// replies with up to 4 KiB of payload, no busy polling.
const (
	defaultInitialRTO      = 20 * time.Millisecond
	defaultMaxRTO          = time.Second
	defaultMaxAttempts     = 8
	defaultReplyBuffers    = 128
	defaultMaxReplyPayload = 4096
)

func defaultClientConfig() clientConfig {
	return clientConfig{
		initialRTO:      defaultInitialRTO,
		maxRTO:          defaultMaxRTO,
		maxAttempts:     defaultMaxAttempts,
		replyBuffers:    defaultReplyBuffers,
		maxReplyPayload: defaultMaxReplyPayload,
	}
}

// WithRetransmission sets how a Client retransmits a request that got no
// reply: the first copy is sent again after initialRTO, each later wait is
// twice the previous one up to maxRTO, and after maxAttempts copies in all
// (the first included) and one more wait the call fails with ErrNoReply.
// maxAttempts 0 retransmits until the call's context ends; 1 never
// retransmits. Every copy carries the same request id, so the server may run
// a request more than once (at-least-once semantics).
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

// WithReplyBuffers sizes the provided-buffer ring replies are received
// into: count buffers (a power of two, 1..32768), each holding one reply
// with up to maxPayload bytes of payload. A reply that does not fit fails
// its call with ErrReplyTooLarge. Replies are copied out of these buffers
// at once, so count bounds bursts, not outstanding calls.
func WithReplyBuffers(count, maxPayload int) ClientOption {
	return func(c *clientConfig) error {
		if count < 1 || count > 32768 || count&(count-1) != 0 {
			return fmt.Errorf("runtime: WithReplyBuffers: count %d is not a power of two in 1..32768", count)
		}
		if maxPayload < 0 || maxPayload > proto.MaxPayload {
			return fmt.Errorf("runtime: WithReplyBuffers: maxPayload %d outside 0..%d", maxPayload, proto.MaxPayload)
		}
		c.replyBuffers, c.maxReplyPayload = count, maxPayload
		return nil
	}
}

// WithClientBusyPoll makes the client loop spin on its ring, instead of
// sleeping in io_uring_enter, for up to window after its last completion
// while calls are outstanding. Spinning costs a core while busy and saves
// the kernel wakeup per reply; 0 (the default) always sleeps.
func WithClientBusyPoll(window time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if window < 0 {
			return fmt.Errorf("runtime: WithClientBusyPoll: negative window")
		}
		c.busyPoll = window
		return nil
	}
}

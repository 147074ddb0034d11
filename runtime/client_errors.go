package runtime

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/zerohop/zerohop/proto"
)

// Errors of the Client. Calls return them wrapped in a *CallError (with
// the endpoint, the method and the attempts) unless said otherwise;
// compare with errors.Is.
var (
	// ErrClientClosed: the Client was closed before the call got its reply
	// (or the call was made after Close). Returned as it is.
	ErrClientClosed = errors.New("runtime: client closed")
	// ErrNoReply: every copy of the request was sent (see
	// WithRetransmission) and no reply came back in time.
	ErrNoReply = errors.New("no reply")
	// ErrReplyTooLarge: the reply did not fit a receive buffer (see
	// WithReceiveBuffers); the server did answer.
	ErrReplyTooLarge = errors.New("reply larger than the receive buffers")
)

// CallError is why a call got no answer: which endpoint, which method,
// how many copies were sent, the cause (ErrNoReply, a context's error, a
// socket error such as ECONNREFUSED from an ICMP port unreachable, an
// interceptor's refusal), and the last error the socket reported for the
// endpoint when it is not the cause itself.
type CallError struct {
	// Service is the DialService name ("" for a Client from Dial).
	Service       string
	Endpoint      netip.AddrPort
	Method        string
	Attempts      int
	Err           error
	LastSocketErr error
}

func (e *CallError) Error() string {
	s := fmt.Sprintf("runtime: call %s to %v", e.Method, e.Endpoint)
	if e.Service != "" {
		s = fmt.Sprintf("runtime: call %s of service %s (last endpoint %v)", e.Method, e.Service, e.Endpoint)
	}
	switch {
	case e.Attempts == 1:
		s += " (1 attempt)"
	case e.Attempts > 1:
		s += fmt.Sprintf(" (%d attempts)", e.Attempts)
	}
	s += ": " + e.Err.Error()
	if e.LastSocketErr != nil {
		s += " (last socket error: " + e.LastSocketErr.Error() + ")"
	}
	return s
}

// Unwrap returns the cause and the last socket error.
func (e *CallError) Unwrap() []error {
	if e.LastSocketErr != nil {
		return []error{e.Err, e.LastSocketErr}
	}
	return []error{e.Err}
}

// StatusError is the error of a call the server answered with a status
// other than OK. Message is the UTF-8 text the server put in field 1 of the
// payload (empty when there was none). Call and Go return it unwrapped, so
// both
//
//	var se *runtime.StatusError
//	errors.As(err, &se) // se.Status, se.Message
//	errors.Is(err, &runtime.StatusError{Status: proto.StatusDenied})
//
// work; errors.Is matches a target StatusError with the same Status whose
// Message is empty or equal.
type StatusError struct {
	Status  proto.Status
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("runtime: call: status %v", e.Status)
	}
	return fmt.Sprintf("runtime: call: status %v: %s", e.Status, e.Message)
}

// Is reports whether target is a *StatusError with the same Status and
// either no Message or the same one.
func (e *StatusError) Is(target error) bool {
	t, ok := target.(*StatusError)
	return ok && t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// StatusOf returns the status of err: the Status of a *StatusError in its
// chain, StatusOK for nil, and false for any other error (the call got no
// answer at all).
func StatusOf(err error) (proto.Status, bool) {
	if err == nil {
		return proto.StatusOK, true
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status, true
	}
	return 0, false
}

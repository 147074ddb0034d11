package runtime

import (
	"errors"
	"fmt"

	"github.com/zerohop/zerohop/proto"
)

// Errors of the Client. Calls return them wrapped (with the method and the
// server address) unless said otherwise; compare with errors.Is.
var (
	// ErrClientClosed: the Client was closed before the call got its reply
	// (or the call was made after Close). Returned as it is.
	ErrClientClosed = errors.New("runtime: client closed")
	// ErrNoReply: every copy of the request was sent (see
	// WithRetransmission) and no reply came back in time.
	ErrNoReply = errors.New("no reply")
	// ErrReplyTooLarge: the reply did not fit a reply buffer (see
	// WithReplyBuffers); the server did answer.
	ErrReplyTooLarge = errors.New("reply larger than the reply buffers")
)

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

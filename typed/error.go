package typed

import (
	"fmt"

	gwir "github.com/zerohop/zerohop/proto"
	zrt "github.com/zerohop/zerohop/runtime"
)

// Error is an application error as it crosses the wire: a status and a
// UTF-8 message (field 1 of the error reply). Application statuses are
// proto.StatusApplication (16) and up; a method may also return one of the
// protocol's own statuses (DENIED, say) by giving it here.
//
// Define a service's errors once and compare with errors.Is, which matches
// an *Error with the same Status whose Message is empty or equal:
//
//	var ErrNotFound = typed.NewError(gwir.StatusApplication, "")
//	…
//	return nil, typed.Errorf(ErrNotFound.Status, "key %q not found", key) // server
//	if errors.Is(err, ErrNotFound) { … }                                  // client
type Error struct {
	Status  gwir.Status
	Message string
}

// NewError returns an Error with status s and message msg.
func NewError(s gwir.Status, msg string) *Error { return &Error{Status: s, Message: msg} }

// Errorf returns an Error with status s and a formatted message.
func Errorf(s gwir.Status, format string, a ...any) *Error {
	return &Error{Status: s, Message: fmt.Sprintf(format, a...)}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "status " + e.Status.String()
	}
	return "status " + e.Status.String() + ": " + e.Message
}

// Is reports whether target is an *Error with the same Status and either
// no Message or the same one.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// Unwrap returns the error as the runtime reports statuses, so that
// runtime.StatusOf and errors.As(err, **runtime.StatusError) work on an
// *Error too.
func (e *Error) Unwrap() error { return &zrt.StatusError{Status: e.Status, Message: e.Message} }

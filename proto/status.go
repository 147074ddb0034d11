package proto

// Status is the status field of a RESPONSE or PONG.
type Status uint16

// Status codes of v1. Codes from StatusApplication up belong to the
// application.
const (
	StatusOK               Status = 0
	StatusUnknownMethod    Status = 1
	StatusBadFrame         Status = 2
	StatusDenied           Status = 3
	StatusRateLimited      Status = 4
	StatusOverloaded       Status = 5
	StatusInternal         Status = 6
	StatusTooLarge         Status = 7
	StatusDeadlineExceeded Status = 8

	StatusApplication Status = 16
)

// The status of a PONG: 0 while the peer serves, 1 while it drains.
const (
	PongServing  Status = 0
	PongDraining Status = 1
)

var statusNames = [...]string{
	StatusOK:               "OK",
	StatusUnknownMethod:    "UNKNOWN_METHOD",
	StatusBadFrame:         "BAD_FRAME",
	StatusDenied:           "DENIED",
	StatusRateLimited:      "RATE_LIMITED",
	StatusOverloaded:       "OVERLOADED",
	StatusInternal:         "INTERNAL",
	StatusTooLarge:         "TOO_LARGE",
	StatusDeadlineExceeded: "DEADLINE_EXCEEDED",
}

// String returns the code's name, "APP(n)" for application codes and
// "STATUS(n)" for reserved ones.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	if s >= StatusApplication {
		return "APP(" + itoa(uint64(s)) + ")"
	}
	return "STATUS(" + itoa(uint64(s)) + ")"
}

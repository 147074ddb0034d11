package policy

import (
	"context"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/authz"
	"github.com/zerohop/zerohop/mesh/policy/internal/filewatch"
)

// DefaultWatchInterval is how often Watch looks at the file by default.
const DefaultWatchInterval = time.Second

// WatchEvent is one outcome of Watch: a policy put in force (Err nil) or a
// file refused, the policy in force kept.
type WatchEvent struct {
	Report Report
	Err    error
}

// Watch loads the policy file at path (unless LoadFile just loaded the
// same bytes from it), then polls it every interval (0:
// DefaultWatchInterval) and reloads it whenever it changes, until ctx
// ends; it returns ctx's error. Each load swaps the whole policy at once
// (calls in flight finish under the policy they started with; none is
// dropped), and a file that is missing, unreadable or malformed leaves
// the policy in force, reported once per change. onEvent, when not nil,
// gets every outcome; without it they are logged.
func (s *Server) Watch(ctx context.Context, path string, interval time.Duration, onEvent func(WatchEvent)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	return filewatch.Poll(ctx, path, interval, func(data []byte, err error) {
		var ev WatchEvent
		if err != nil {
			ev.Err = &authz.FileError{File: path, Msg: "reading the policy: " + err.Error(), Err: err}
		} else if s.loadedAlready(path, data) {
			return // LoadFile put exactly this in force
		} else {
			ev.Report, ev.Err = s.loadFileData(path, data)
		}
		if onEvent != nil {
			onEvent(ev)
			return
		}
		s.logEvent(ev)
	})
}

// logEvent logs a reload's outcome: refusals at ERROR (the old policy
// stays, someone must fix the file), loads at INFO, warnings at WARN.
func (s *Server) logEvent(ev WatchEvent) {
	if ev.Err != nil {
		s.log.Error("policy: file refused; the policy in force stays", "err", ev.Err)
		return
	}
	s.log.Info("policy: loaded", "version", ev.Report.Version, "source", ev.Report.Source, "policy", ev.Report.String())
}

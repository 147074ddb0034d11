package authz

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/internal/filewatch"
)

// Engine holds the policy in force and swaps it atomically. Match may run
// on every loop while Load, LoadFile or a Watch replaces the policy: each
// call is decided wholly by the old policy or wholly by the new one.
type Engine struct {
	loops   int
	methods []string
	cur     atomic.Pointer[Policy]
	mu      sync.Mutex // serializes loads, so reports come out in order
}

// NewEngine returns an engine for loops event loops serving methods (full
// names), starting with the empty policy (allow everything).
func NewEngine(loops int, methods []string) (*Engine, error) {
	p, err := Compile(Spec{}, methods, loops)
	if err != nil {
		return nil, err
	}
	e := &Engine{loops: loops, methods: methods}
	e.cur.Store(p)
	return e, nil
}

// Policy returns the policy in force.
func (e *Engine) Policy() *Policy { return e.cur.Load() }

// Match decides a call with the policy in force; see Policy.Match.
func (e *Engine) Match(loop int, method uint32, peer netip.Addr, caller, identity []byte) (allow bool, rule int, message string) {
	return e.cur.Load().Match(loop, method, peer, caller, identity)
}

// Load compiles spec and puts it in force; on error the old policy stays.
func (e *Engine) Load(spec Spec) (Report, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := Compile(spec, e.methods, e.loops)
	if err != nil {
		return Report{}, err
	}
	e.cur.Store(p)
	return p.Report(), nil
}

// LoadFile parses the policy file at path and puts it in force; on any
// error (unreadable, malformed, not compilable) the old policy stays and
// the error names the file and line.
func (e *Engine) LoadFile(path string) (Report, error) {
	spec, err := ParseFile(path)
	if err != nil {
		return Report{}, err
	}
	rep, err := e.Load(spec)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

// WatchEvent is one outcome of a Watch: a policy put in force (Err nil) or
// a file that was refused (the old policy stays).
type WatchEvent struct {
	Report Report
	Err    error
}

// DefaultWatchInterval is how often Watch looks at the file by default.
const DefaultWatchInterval = time.Second

// Watch loads the file at path, then polls it every interval (0:
// DefaultWatchInterval) and reloads it when its size, modification time,
// inode or content change, until ctx ends; it returns ctx's error. Polling
// rather than inotify sees editors that replace the file by renaming and
// files behind symlinks that are swapped (as Kubernetes does with
// ConfigMap volumes). onEvent, if not nil, is called after every load
// attempt from Watch's goroutine; a missing file is reported as an error
// (once, until it changes) and the old policy stays.
func (e *Engine) Watch(ctx context.Context, path string, interval time.Duration, onEvent func(WatchEvent)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	return filewatch.Poll(ctx, path, interval, func(data []byte, err error) {
		var ev WatchEvent
		if err != nil {
			ev.Err = &FileError{File: path, Msg: "reading the policy: " + err.Error(), Err: err}
		} else {
			ev.Report, ev.Err = e.loadData(path, data)
		}
		if onEvent != nil {
			onEvent(ev)
		}
	})
}

func (e *Engine) loadData(path string, data []byte) (Report, error) {
	spec, err := Parse(path, data)
	if err != nil {
		return Report{}, err
	}
	rep, err := e.Load(spec)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

package static

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// ListBuilder resolves every service to one fixed list of endpoints.
type ListBuilder struct {
	eps      []runtime.Endpoint
	counters discovery.Counters
}

// New returns a builder whose resolvers report eps for whatever service
// they are built for. Build checks the list: every address valid with a
// port, none repeated.
func New(eps ...runtime.Endpoint) *ListBuilder {
	return &ListBuilder{eps: slices.Clone(eps)}
}

// Build implements runtime.ResolverBuilder. The list is pushed once from
// the resolver's goroutine; ResolveNow pushes nothing new.
func (b *ListBuilder) Build(service string, cc runtime.ResolverConn) (runtime.Resolver, error) {
	if err := checkAddrs(b.eps); err != nil {
		return nil, fmt.Errorf("static: list for %s: %w", service, err)
	}
	state := runtime.ResolverState{Endpoints: b.eps}
	return discovery.Start(cc, &b.counters, func(ctx context.Context, r *discovery.Resolver) {
		r.Conn().Update(state)
	}), nil
}

// Stats reads the counters of every resolver the builder made.
func (b *ListBuilder) Stats() discovery.Stats { return b.counters.Stats() }

// DefaultInterval is how often a file resolver looks at its file.
const DefaultInterval = time.Second

// FileOption configures File.
type FileOption func(*FileBuilder)

// WithInterval sets how often the file is looked at (default
// DefaultInterval); d ≤ 0 keeps the default.
func WithInterval(d time.Duration) FileOption {
	return func(b *FileBuilder) {
		if d > 0 {
			b.interval = d
		}
	}
}

// FileBuilder resolves every service to the endpoints listed in one file.
type FileBuilder struct {
	path     string
	interval time.Duration
	counters discovery.Counters
	reads    atomic.Uint64
	errs     atomic.Uint64
}

// File returns a builder whose resolvers read path (format in the package
// doc) and push its endpoints whenever its content changes.
func File(path string, opts ...FileOption) *FileBuilder {
	b := &FileBuilder{path: path, interval: DefaultInterval}
	for _, o := range opts {
		o(b)
	}
	return b
}

// FileStats counts what a FileBuilder's resolvers did.
type FileStats struct {
	discovery.Stats
	// Reads is how many times a file's content was read.
	Reads uint64
	// Errors is how many reads failed or did not parse.
	Errors uint64
}

// Stats reads the counters of every resolver the builder made.
func (b *FileBuilder) Stats() FileStats {
	return FileStats{Stats: b.counters.Stats(), Reads: b.reads.Load(), Errors: b.errs.Load()}
}

// Build implements runtime.ResolverBuilder. It reads and parses the file
// once and fails if that fails; the endpoints are pushed from the
// resolver's goroutine.
func (b *FileBuilder) Build(service string, cc runtime.ResolverConn) (runtime.Resolver, error) {
	w := &fileWatch{b: b}
	eps, err := w.read(true)
	if err != nil {
		return nil, fmt.Errorf("static: endpoints file for %s: %w (check the path given to static.File)", service, err)
	}
	return discovery.Start(cc, &b.counters, func(ctx context.Context, r *discovery.Resolver) {
		w.run(ctx, r, eps)
	}), nil
}

// fingerprint is what a stat tells of a file's identity and content.
type fingerprint struct {
	mtimeNs, size int64
	ino, dev      uint64
}

// fileWatch is the state of one file resolver's goroutine.
type fileWatch struct {
	b        *FileBuilder
	seen     fingerprint
	sum      [sha256.Size]byte // content last parsed, good or bad
	reported bool              // an error was reported since the last good read
}

func (w *fileWatch) run(ctx context.Context, r *discovery.Resolver, eps []runtime.Endpoint) {
	r.Conn().Update(runtime.ResolverState{Endpoints: eps})
	tick := time.NewTicker(w.b.interval)
	defer tick.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.Now():
			force = true
		}
		eps, err := w.read(force)
		var bad *ParseError
		switch {
		case err != nil && (errors.As(err, &bad) || !w.reported):
			// Each new bad content is reported (it is read only once); a
			// missing file once until it is back.
			w.reported = true
			r.Conn().Error(fmt.Errorf("static: %w (keeping the last good endpoints)", err))
		case err == nil && eps != nil:
			w.reported = false
			r.Conn().Update(runtime.ResolverState{Endpoints: eps})
		}
	}
}

// read looks at the file and returns its endpoints if its content is new
// (eps nil, err nil: nothing new). Unless force, an unchanged fingerprint
// skips the read.
func (w *fileWatch) read(force bool) ([]runtime.Endpoint, error) {
	fi, err := os.Stat(w.b.path)
	if err != nil {
		return nil, w.lost(err)
	}
	fp := fingerprintOf(fi)
	if fp == w.seen && !force {
		return nil, nil
	}
	w.seen = fp
	data, err := os.ReadFile(w.b.path)
	w.b.reads.Add(1)
	if err != nil {
		return nil, w.lost(err)
	}
	sum := sha256.Sum256(data)
	if sum == w.sum {
		return nil, nil
	}
	w.sum = sum
	eps, err := Parse(w.b.path, data)
	if err != nil {
		w.b.errs.Add(1)
		return nil, err
	}
	if eps == nil {
		eps = []runtime.Endpoint{} // an empty file: the service has no endpoints
	}
	return eps, nil
}

// lost forgets the file after it could not be stat'ed or read, so that
// whatever is there next is read and pushed, even the same content again
// (the client was told of the error and waits for an update).
func (w *fileWatch) lost(err error) error {
	w.seen, w.sum = fingerprint{}, [sha256.Size]byte{}
	w.b.errs.Add(1)
	return err
}

func fingerprintOf(fi fs.FileInfo) fingerprint {
	fp := fingerprint{mtimeNs: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fp.ino, fp.dev = st.Ino, st.Dev
	}
	return fp
}

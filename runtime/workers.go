package runtime

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// job is one request handed to a blocking handler. The request frame is
// copied into the job, so the receive buffer goes back to the kernel at
// once; the reply is built in the job and sent by the owning loop.
type job struct {
	h     *handlerEntry
	frame []byte
	peer  netip.AddrPort
	queue int
	out   []byte // reply frame room; cap is the owner's reply limit
	n     int    // reply frame length, 0 for none
	owner jobOwner
	stats *loopCounters
	token uint64 // the owner's bookkeeping
	req   Request
	resp  Response
}

// jobOwner is the loop a job's reply goes back to. jobDone is called on the
// worker's goroutine and must only queue the job and wake the loop.
type jobOwner interface {
	jobDone(j *job)
}

// workerPool runs blocking handlers on a fixed number of goroutines with a
// bounded queue. Jobs are preallocated (queue length + workers), so a full
// pool is detected without allocating and answered OVERLOADED.
type workerPool struct {
	n        int
	queue    chan *job
	free     chan *job
	inflight atomic.Int64
	wg       sync.WaitGroup
	once     sync.Once
}

func newWorkerPool(n, queueLen int) *workerPool {
	p := &workerPool{n: n, queue: make(chan *job, queueLen), free: make(chan *job, queueLen+n)}
	for i := 0; i < queueLen+n; i++ {
		p.free <- &job{}
	}
	return p
}

func (p *workerPool) start() {

	for i := 0; i < p.n; i++ {
		p.wg.Add(1)
		go p.work()
	}
}

func (p *workerPool) work() {
	defer p.wg.Done()
	for j := range p.queue {
		start := time.Now()
		j.n = runHandler(j.h, proto.Frame(j.frame), j.peer, j.queue, &j.req, &j.resp, j.out, j.stats)
		j.stats.latency.record(time.Since(start))
		if proto.Frame(j.frame).Oneway() {
			j.n = 0
		}
		j.owner.jobDone(j)
	}
}

// submit hands frame to a worker; it returns false (and keeps nothing) when
// every job is taken. replyCap bounds the reply frame.
func (p *workerPool) submit(owner jobOwner, stats *loopCounters, h *handlerEntry, frame []byte, peer netip.AddrPort, queue, replyCap int, token uint64) bool {
	var j *job
	select {
	case j = <-p.free:
	default:
		return false
	}
	j.h, j.peer, j.queue, j.owner, j.stats, j.token, j.n = h, peer, queue, owner, stats, token, 0
	j.frame = append(j.frame[:0], frame...)
	if cap(j.out) < replyCap {
		j.out = make([]byte, replyCap)
	}
	j.out = j.out[:replyCap]
	p.inflight.Add(1)
	select {
	case p.queue <- j:
		return true
	default: // cannot happen: free jobs never outnumber queue slots + workers
		p.release(j)
		return false
	}
}

// release returns a finished job; the owner calls it once the reply is
// sent (or abandoned).
func (p *workerPool) release(j *job) {
	j.h, j.owner, j.stats = nil, nil, nil
	p.inflight.Add(-1)
	p.free <- j
}

// drain waits until no job is queued, running or waiting for its reply to
// be sent and owed() is false, or until ctx is done.
func (p *workerPool) drain(ctx context.Context, owed func() bool) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for p.inflight.Load() > 0 || owed() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// close stops the workers once the queue is empty and waits for them until
// ctx is done; a handler that never returns keeps its goroutine, nothing
// else.
func (p *workerPool) close(ctx context.Context) error {
	p.once.Do(func() { close(p.queue) })
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

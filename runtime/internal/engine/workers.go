package engine

import (
	"context"
	"net/netip"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
)

// Route is how a path sends a blocking request's reply once the worker is
// done: the one encoding of "where this reply goes" for every path.
type Route struct {
	// Conn is the TCP connection slot (PathTCP).
	Conn uint32
	// Reply holds the reply's Ethernet/IP/UDP header fields (PathXSK),
	// taken from the request so that its frame goes back to the kernel at
	// once and the reply is built in a fresh one.
	Reply netstack.UDPFields
}

// JobOwner is the loop a job's reply goes back to. JobDone runs on the
// worker's goroutine and must only queue the job and wake the loop.
type JobOwner interface {
	JobDone(j *Job)
}

// Job is one request handed to a blocking handler. The request frame is
// copied into it, so the receive buffer goes back to the kernel at once;
// the reply is built in the job and sent by the loop that received it.
type Job struct {
	Method *Method
	Peer   netip.AddrPort
	Path   Path
	Route  Route
	// Source is the index of the loop's source that submitted the job.
	Source int
	// Reply is the sealed reply (a sub-slice of the job's buffer), nil
	// when there is nothing to send.
	Reply proto.Frame

	frame    []byte
	out      []byte
	ident    Identity // of a sealed request: its reply is sealed on the loop
	head     int      // room kept before the reply in out, for sealing
	tail     int      // and after it
	queue    int
	loop     int
	arrival  int64 // Mono, as Request's
	deadline int64
	owner    JobOwner
	c        *LoopCounters
	req      Request
	resp     Response
	x        proto.ExtBuilder
}

// Frame is the copied request frame.
func (j *Job) Frame() proto.Frame { return proto.Frame(j.frame) }

// Pool runs blocking handlers on a fixed number of goroutines with a
// bounded queue. Jobs are preallocated (queue length + workers), so a full
// pool is detected without allocating and answered OVERLOADED.
type Pool struct {
	srv   *Server
	n     int
	queue chan *Job
	free  chan *Job
	// inflight counts jobs taken and not yet released: queued, running,
	// or waiting for their reply to be sent.
	inflight atomic.Int64
	// state is the number of running handlers, with stateClosed set once
	// no queued job may start any more.
	state     atomic.Int64
	abandoned atomic.Uint64
	wg        sync.WaitGroup
	once      sync.Once
}

const stateClosed = 1 << 62

// NewPool makes a pool of n workers with a queue of queueLen jobs.
func NewPool(srv *Server, n, queueLen int) *Pool {
	// The channel has room for every job: a worker between two jobs holds
	// none, so with queueLen jobs queued and n free a full channel would be
	// reachable (and Run panicked on it under overload).
	p := &Pool{srv: srv, n: n, queue: make(chan *Job, queueLen+n), free: make(chan *Job, queueLen+n)}
	for i := 0; i < queueLen+n; i++ {
		p.free <- &Job{}
	}
	return p
}

// Start starts the workers.
func (p *Pool) Start() {
	for i := 0; i < p.n; i++ {
		p.wg.Add(1)
		go p.work()
	}
}

func (p *Pool) work() {
	defer p.wg.Done()
	for j := range p.queue {
		if !p.begin() {
			p.abandoned.Add(1)
			j.release(p.srv)
			j.Reply = nil
			j.owner.JobDone(j)
			continue
		}
		pprof.SetGoroutineLabels(j.Method.labels())
		j.run(p.srv)
		pprof.SetGoroutineLabels(context.Background())
		p.state.Add(-1)
		j.owner.JobDone(j)
	}
}

// begin counts a handler as running unless the pool is closed.
func (p *Pool) begin() bool {
	for {
		s := p.state.Load()
		if s&stateClosed != 0 {
			return false
		}
		if p.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// release tells the method's admission stages that the job's request
// will never run (the pool closed before a worker took it).
func (j *Job) release(s *Server) {
	if j.Method.Release == nil {
		return
	}
	req := &j.req
	req.frame, req.peer, req.queue, req.path, req.method = proto.Frame(j.frame), j.Peer, j.queue, j.Path, j.Method
	req.arrival, req.deadline, req.base, req.ident = j.arrival, j.deadline, s.ctx, j.ident
	j.Method.Release(req)
	req.frame = nil
}

// run serves the job's request on the calling worker.
func (j *Job) run(s *Server) {
	m := j.Method
	frame := proto.Frame(j.frame)
	req, resp := &j.req, &j.resp
	req.frame, req.peer, req.queue, req.path, req.method = frame, j.Peer, j.queue, j.Path, m
	req.arrival, req.deadline, req.base, req.ident = j.arrival, j.deadline, s.ctx, j.ident
	// The reply is built inside the room the loop's sealer needs around
	// it (none for an unsealed request); the loop seals it (JobFinished).
	resp.reset(j.out[j.head:j.head:len(j.out)-j.tail], replyPayloadOffset(frame))
	mc := &m.Counters[j.loop]
	if j.deadline != 0 && Mono() > j.deadline {
		if m.Release != nil {
			m.Release(req)
		}
		j.c.Expired.Add(1)
		resp.Error(proto.StatusDeadlineExceeded, "deadline passed while the request was queued")
	} else {
		runStage(s, j.c, m, m.Serve, req, resp)
	}
	now := Mono()
	j.Reply = sealReply(req, resp, j.c, &j.x, now)
	mc.Statuses[StatusSlot(replyStatus(j.Reply, resp))].Add(1)
	lat := time.Duration(now - j.arrival)
	recordBoth(&mc.Latency, &j.c.Latency, lat)
	oneway := frame.Oneway()
	req.done()
	if s.Poison {
		poison(j.frame)
	}
	if oneway {
		j.Reply = nil
	}
}

// Get takes a free job, or nil when every job is taken.
func (p *Pool) Get() *Job {
	select {
	case j := <-p.free:
		p.inflight.Add(1)
		return j
	default:
		return nil
	}
}

// Prepare copies what the worker needs of req (on the loop that received
// it) into j, with room for a reply of up to replyCap bytes, head and
// tail of which are kept free around the reply frame for sealing it.
func (j *Job) Prepare(m *Method, req *Request, loop int, c *LoopCounters, replyCap, head, tail int) {
	j.Method, j.Peer, j.Path, j.queue, j.loop, j.c = m, req.peer, req.path, req.queue, loop, c
	j.ident, j.head, j.tail = req.ident, head, tail
	j.arrival, j.deadline = req.arrival, req.deadline
	j.frame = append(j.frame[:0], req.frame...)
	if cap(j.out) < replyCap {
		j.out = make([]byte, replyCap)
	}
	j.out = j.out[:replyCap]
	j.Reply = nil
	j.Route = Route{}
}

// Run queues a prepared job; owner gets it back through JobDone.
func (p *Pool) Run(j *Job, owner JobOwner, source int) {
	j.owner, j.Source = owner, source
	select {
	case p.queue <- j:
	default: // cannot happen: free jobs never outnumber queue slots + workers
		panic("engine: worker queue full with a free job taken")
	}
}

// Release returns a finished job once its reply was sent or abandoned.
func (p *Pool) Release(j *Job) {
	j.Method, j.owner, j.c, j.Reply = nil, nil, nil, nil
	p.inflight.Add(-1)
	p.free <- j
}

// Inflight counts jobs taken and not released.
func (p *Pool) Inflight() int64 { return p.inflight.Load() }

// Abandoned counts queued jobs that never ran because the server shut
// down first.
func (p *Pool) Abandoned() uint64 { return p.abandoned.Load() }

// Drain waits until no job is queued, running or waiting for its reply to
// be sent and owed() is false, or until ctx is done.
func (p *Pool) Drain(ctx context.Context, owed func() bool) error {
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

// StopStarts makes sure no queued job starts from now on: each is counted
// as abandoned and handed back to its loop without a reply.
func (p *Pool) StopStarts() {
	for {
		s := p.state.Load()
		if s&stateClosed != 0 || p.state.CompareAndSwap(s, s|stateClosed) {
			return
		}
	}
}

// Close stops the workers (after StopStarts) and waits for running
// handlers until ctx is done; a handler that never returns keeps its
// goroutine, nothing else.
func (p *Pool) Close(ctx context.Context) error {
	p.StopStarts()
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

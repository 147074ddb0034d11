package policy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/shed"
)

// epoch is the origin of the monotonic nanoseconds the policies take.
var epoch = time.Now()

// nanotime is now in the policies' clock (monotonic, ≥ 0 after init).
func nanotime() int64 { return int64(time.Since(epoch)) }

// mono converts a time taken with a monotonic reading (Request.Arrival,
// Request.Deadline) to the policies' clock.
func mono(t time.Time) int64 { return int64(t.Sub(epoch)) }

// queueSlots bounds the queue numbers mapped without a lookup: AF_XDP
// queues are below bpf.MaxQueues (256), kernel-socket loops are numbered
// from 0.
const queueSlots = 1024

// shard is one event loop's state in the policies that keep per-loop
// state (the rate limiter's leased tokens, the shedder's window).
type shard struct {
	index int
	// mu is set on the overflow shard only, which loops beyond
	// ServerConfig.Loops share: single-writer state then needs a lock.
	mu *sync.Mutex
	// Completions and releases of blocking calls, added by workers and
	// folded into the shedder by the loop at its next admission, so the
	// shedder keeps one writer.
	doneN, doneRt, doneWait, released atomic.Int64
	_                                 [64]byte
}

func (s *shard) lock() {
	if s.mu != nil {
		s.mu.Lock()
	}
}

func (s *shard) unlock() {
	if s.mu != nil {
		s.mu.Unlock()
	}
}

// fold hands the completions workers reported to the loop's shedder.
func (s *shard) fold(now int64, l *shed.Loop) {
	if s.doneN.Load() > 0 {
		n := s.doneN.Swap(0)
		l.DoneBatch(now, n, time.Duration(s.doneRt.Swap(0)), time.Duration(s.doneWait.Swap(0)))
	}
	if s.released.Load() > 0 {
		l.ReleaseBatch(now, s.released.Swap(0))
	}
}

// shardTable assigns loops (named by Request.Queue, the loop's first RX
// queue or its index) to shards on first use. A loop's requests are
// admitted on the loop itself, so a queue's slot is written once, by its
// loop, before any worker looks it up.
type shardTable struct {
	byQueue  [queueSlots]atomic.Int32 // shard index + 1; 0: not seen yet
	next     atomic.Int32
	shards   []shard // the last is the overflow shard
	overflow sync.Mutex
	warn     func(queue int)
	warned   atomic.Bool
}

func newShardTable(loops int, warn func(queue int)) *shardTable {
	t := &shardTable{shards: make([]shard, loops+1), warn: warn}
	for i := range t.shards {
		t.shards[i].index = i
	}
	t.shards[loops].mu = &t.overflow
	return t
}

// get returns the shard of the loop serving queue.
func (t *shardTable) get(queue int) *shard {
	if uint(queue) < queueSlots {
		if v := t.byQueue[queue].Load(); v != 0 {
			return &t.shards[v-1]
		}
	}
	return t.assign(queue)
}

func (t *shardTable) assign(queue int) *shard {
	over := len(t.shards) - 1
	if uint(queue) >= queueSlots {
		t.overflowed(queue)
		return &t.shards[over]
	}
	i := int(t.next.Add(1)) - 1
	if i >= over {
		i = over
		t.overflowed(queue)
	}
	if !t.byQueue[queue].CompareAndSwap(0, int32(i+1)) {
		return &t.shards[t.byQueue[queue].Load()-1]
	}
	return &t.shards[i]
}

func (t *shardTable) overflowed(queue int) {
	if t.warn != nil && t.warned.CompareAndSwap(false, true) {
		t.warn(queue)
	}
}

// loops is the number of shards, the overflow one included.
func (t *shardTable) loops() int { return len(t.shards) }

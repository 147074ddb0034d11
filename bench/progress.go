package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar draws "[#####.....] 45% zerohop-xsk N=64 (3/20)" on a
// terminal, redrawn every 200 ms; elsewhere it prints one line per point.
type progressBar struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	total    int
	done     int
	perPoint time.Duration
	label    string
	started  time.Time // when the current point's client said ready
	stop     chan struct{}
	stopped  sync.WaitGroup
}

func newProgressBar(w io.Writer, terminal bool, total int, perPoint time.Duration) *progressBar {
	p := &progressBar{w: w, terminal: terminal, total: total, perPoint: perPoint, stop: make(chan struct{})}
	if terminal {
		p.stopped.Add(1)
		go func() {
			defer p.stopped.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				case <-p.stop:
					return
				}
			}
		}()
	}
	return p
}

func (p *progressBar) begin(variant string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label = fmt.Sprintf("%s N=%d", variant, n)
	p.started = time.Time{}
	p.draw()
}

func (p *progressBar) ready() {
	p.mu.Lock()
	p.started = time.Now()
	p.mu.Unlock()
}

func (p *progressBar) end(pt Point) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.started = time.Time{}
	if !p.terminal {
		if pt.Error != "" {
			fmt.Fprintf(p.w, "bench: %s: error: %s\n", p.label, pt.Error)
		} else {
			fmt.Fprintf(p.w, "bench: %s: %.0f req/s, p99 %.1f µs, errors %d\n", p.label, pt.RPS, pt.P99Us, pt.Errors)
		}
		return
	}
	p.draw()
}

func (p *progressBar) skip(points int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += points
	p.draw()
}

// draw writes the bar; the caller holds mu.
func (p *progressBar) draw() {
	if !p.terminal || p.total == 0 {
		return
	}
	frac := float64(p.done)
	if !p.started.IsZero() && p.perPoint > 0 {
		frac += min(1, float64(time.Since(p.started))/float64(p.perPoint))
	}
	frac /= float64(p.total)
	const width = 30
	filled := int(frac * width)
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %3.0f%% %s (%d/%d)", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		frac*100, p.label, min(p.done+1, p.total), p.total)
}

func (p *progressBar) finish() {
	close(p.stop)
	p.stopped.Wait()
	if p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

package xskpath

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/sysinfo"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"github.com/zerohop/zerohop/runtime/internal/xskhook"
)

// path is an Attachment with the loop plan made for it: what the runtime
// holds through xskhook.Path.
type path struct {
	*Attachment
	req   xskhook.Request
	qm    sysinfo.QueueMap
	loops []xskhook.Loop
}

// Open joins the interface's steering program, binds an AF_XDP socket on
// every queue it is to serve and plans the loops: the queues whose loops
// go to the same core share one loop. It is xskhook.Open once
// runtime/xdp is linked in.
//
// Which queues: req.Queues, or else every RX queue of the interface
// (sysinfo.QueueMap: ethtool channels, else /sys) that no other zerohop
// server holds. AF_XDP allows one process per (interface, queue), so
// servers of one interface divide its queues; what arrives for this
// server on a queue it does not serve goes to the kernel and reaches its
// kernel sockets (the hybrid path), so it is answered all the same.
//
// Which core: req.Cores, or else the CPU the queue's own interrupt is
// affine to where the device has per-queue interrupts, else queue mod the
// usable CPUs (sysinfo.QueueMap says which, and the start-up line shows
// it).
func Open(req xskhook.Request) (_ xskhook.Path, err error) {
	iface := req.Iface
	// QueueMap reads the count with an ethtool ioctl on a socket of the
	// calling thread's network namespace, which is right when Listen runs
	// in a namespace entered with setns (whose /sys would show another
	// namespace's interfaces).
	qm, err := sysinfo.InterfaceQueues(iface)
	if err != nil {
		return nil, fmt.Errorf("reading the RX queues of %s: %w", iface, err)
	}
	for _, q := range req.Queues {
		if q >= qm.RXQueues {
			return nil, &xskhook.Fatal{Err: fmt.Errorf("runtime: WithQueues: %s has %d RX queue(s) (0-%d), not queue %d", iface, qm.RXQueues, qm.RXQueues-1, q)}
		}
	}
	att, err := Join(Config{Iface: iface, Addr: req.Addr, Frames: req.Frames, PinMaps: req.PinMaps,
		AcceptPartialChecksum: qm.Virtual, OnKeepaliveError: keepaliveError(req), KeepMapped: req.KeepMapped,
		RequireSealed: req.RequireSealed})
	if err != nil {
		if errors.Is(err, bpf.ErrAddrInUse) && !req.ReusePort {
			return nil, &xskhook.Fatal{Err: fmt.Errorf("runtime: %s: %w: %w (give WithReusePort to every server of the address to share it; the steered traffic stays with one of them)",
				req.Addr, sockpath.ErrAddrInUse, err)}
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			att.Close()
		}
	}()
	holders, err := att.TakenQueues()
	if err != nil {
		return nil, err
	}
	taken := map[int]Holder{}
	for _, h := range holders {
		taken[h.Queue] = h
	}
	queues, optional := req.Queues, len(req.Queues) == 0
	if optional {
		// The steering program has socket slots for bpf.MaxQueues queues;
		// what arrives on higher ones goes to the kernel path.
		for q := range min(qm.RXQueues, bpf.MaxQueues) {
			if _, ok := taken[q]; !ok {
				queues = append(queues, q)
			}
		}
		if len(queues) == 0 {
			return nil, fmt.Errorf("every RX queue of %s is held by other zerohop servers: queue %s (AF_XDP allows one process per queue: give the servers of one interface disjoint WithQueues)",
				iface, DescribeHolders(holders))
		}
	} else {
		var clash []Holder
		for _, q := range queues {
			if h, ok := taken[q]; ok {
				clash = append(clash, h)
			}
		}
		if len(clash) > 0 {
			return nil, fmt.Errorf("WithQueues: queue %s of %s held by other zerohop servers (AF_XDP allows one process per queue: give the servers of one interface disjoint WithQueues, or omit it to serve every free queue)",
				DescribeHolders(clash), iface)
		}
	}
	coreOf := map[int]int{}
	for i, q := range queues {
		if len(req.Cores) > 0 {
			coreOf[q] = req.Cores[i]
		} else {
			coreOf[q] = qm.Queues[q].CPU
		}
	}
	skipped, err := att.Open(queues, optional)
	if err != nil {
		return nil, err
	}
	p := &path{Attachment: att, req: req, qm: qm}
	byQueue := map[int]*Socket{}
	for _, s := range att.Sockets() {
		byQueue[s.Queue()] = s
	}
	byCore := map[int]int{}
	for _, q := range att.Queues() {
		li, ok := byCore[coreOf[q]]
		if !ok {
			li = len(p.loops)
			byCore[coreOf[q]] = li
			p.loops = append(p.loops, xskhook.Loop{Core: coreOf[q]})
		}
		p.loops[li].Queues = append(p.loops[li].Queues, q)
		p.loops[li].Sources = append(p.loops[li].Sources, engine.Source(byQueue[q]))
	}
	p.warnUnserved(holders, skipped)
	return p, nil
}

func (p *path) Loops() []xskhook.Loop { return p.loops }
func (p *path) Iface() string         { return p.req.Iface }

// Steer starts steering; another server can only have taken the port
// since Open checked it.
func (p *path) Steer() error {
	err := p.Attachment.Steer()
	if errors.Is(err, bpf.ErrAddrInUse) {
		return fmt.Errorf("runtime: %s: %w: %w", p.req.Addr, sockpath.ErrAddrInUse, err)
	}
	return err
}

func (p *path) Stats() []xskhook.SocketStats {
	ss := p.Attachment.Stats()
	out := make([]xskhook.SocketStats, len(ss))
	for i, s := range ss {
		out[i] = xskhook.SocketStats(s)
	}
	return out
}

func (p *path) IRQ(q int) int {
	if q < len(p.qm.Queues) {
		return p.qm.Queues[q].IRQ
	}
	return -1
}

// DescribeLoops is the queue → IRQ → core map of the start-up log line:
// "queue0(no irq),queue2(no irq)→cpu0 queue1(irq 45)→cpu1".
func (p *path) DescribeLoops() string {
	var b strings.Builder
	for i, l := range p.loops {
		if i > 0 {
			b.WriteString(" ")
		}
		for j, q := range l.Queues {
			if j > 0 {
				b.WriteString(",")
			}
			irq := "no irq"
			if n := p.IRQ(q); n >= 0 {
				irq = fmt.Sprintf("irq %d", n)
			}
			fmt.Fprintf(&b, "queue%d(%s)", q, irq)
		}
		fmt.Fprintf(&b, "→cpu%d", l.Core)
	}
	return b.String()
}

// CoresFrom says where the loops' cores came from, for the log line.
func (p *path) CoresFrom() string {
	if len(p.req.Cores) > 0 {
		return "WithCores"
	}
	from := map[sysinfo.CPUSource]bool{}
	for _, l := range p.loops {
		for _, q := range l.Queues {
			from[p.qm.Queues[q].Source] = true
		}
	}
	switch {
	case len(from) == 1 && from[sysinfo.CPUFromIRQAffinity]:
		return "IRQ affinity"
	case len(from) == 1:
		return "queue mod CPUs (no per-queue IRQs)"
	}
	return "IRQ affinity where the queue has its own IRQ, else queue mod CPUs"
}

// warnUnserved says which queues of the interface this server does not
// serve through AF_XDP, and that what arrives there for it goes through
// the kernel path: at WARN when another server's holding them made it so,
// at INFO when it was chosen (WithQueues).
func (p *path) warnUnserved(holders []Holder, skipped []error) {
	bound := p.Queues()
	var unserved []string
	for q := range p.qm.RXQueues {
		if !slices.Contains(bound, q) {
			unserved = append(unserved, fmt.Sprint(q))
		}
	}
	if len(unserved) == 0 {
		return
	}
	args := []any{"iface", p.req.Iface, "addr", p.req.Addr.String(), "served", joinInts(bound), "unserved", strings.Join(unserved, ",")}
	if len(holders) > 0 || len(skipped) > 0 {
		if len(holders) > 0 {
			args = append(args, "held_by", DescribeHolders(holders))
		}
		if len(skipped) > 0 {
			args = append(args, "bind_failed", errors.Join(skipped...).Error())
		}
		p.req.Logger.Warn("zerohop: RX queues held by other AF_XDP users are served through the kernel path (this server's kernel sockets answer what arrives there)", args...)
		return
	}
	p.req.Logger.Info("zerohop: RX queues left out (by WithQueues, or beyond the steering program's bpf.MaxQueues) are served through the kernel path (this server's kernel sockets answer what arrives there)", args...)
}

// keepaliveError logs the steering program's heartbeat failures: the
// first at WARN, then at most one a minute, and a takeover at ERROR.
func keepaliveError(req xskhook.Request) func(error) {
	var last time.Time
	return func(err error) {
		if errors.Is(err, bpf.ErrTakenOver) {
			req.Logger.Error("zerohop: another server took over this server's port on the interface (this server stopped heartbeating for over a second)", "err", err)
			return
		}
		if now := time.Now(); last.IsZero() || now.Sub(last) > time.Minute {
			last = now
			req.Logger.Warn("zerohop: heartbeat of the XDP steering slot failed (after a second without one the port goes to the kernel path)", "err", err)
		}
	}
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ",")
}

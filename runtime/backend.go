package runtime

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/sysinfo"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"github.com/zerohop/zerohop/runtime/internal/xskpath"
	"golang.org/x/sys/unix"
)

// Ring sizes of a server loop.
const (
	loopSQEntries = 1024
	loopCQEntries = 4096
	// xskEnterEvery bounds how many spinning passes of an AF_XDP loop go
	// by without entering the ring, which runs deferred completions
	// (worker wakeups, kick errors, the kernel sockets of the hybrid path)
	// on a DEFER_TASKRUN ring.
	xskEnterEvery = 64
)

// xskAttachment is what the server needs of the AF_XDP path.
type xskAttachment interface {
	Sockets() []*xskpath.Socket
	Steer() error
	Unsteer() error
	Close() error
	Stats() []xskpath.SocketStats
	Describe() string
}

// chooseBackend picks the data path cfg.backend asks for and plans the
// loops. BackendAuto tries XSK and falls back to io_uring sockets, logging
// why at WARN.
func (s *Server) chooseBackend() error {
	switch s.cfg.backend {
	case BackendUring:
		s.backend, s.reason = BackendUring, "forced by WithBackend(BackendUring)"
		return s.planUring()
	case BackendXSK:
		if err := s.openXSK(); err != nil {
			return fmt.Errorf("runtime: XSK backend forced but unavailable (WithBackend): %w", err)
		}
		s.backend, s.reason = BackendXSK, "forced by WithBackend(BackendXSK)"
		return nil
	}
	err := s.openXSK()
	if err == nil {
		s.backend, s.reason = BackendXSK, fmt.Sprintf("AF_XDP available on %s", s.cfg.iface)
		return nil
	}
	var fatal *fatalError
	if errors.As(err, &fatal) {
		return fatal.err
	}
	s.backend, s.reason = BackendUring, "XSK unavailable: "+err.Error()
	if !s.addr.Addr().IsLoopback() {
		s.cfg.logger.Warn("zerohop falls back to io_uring sockets (BackendAuto): AF_XDP cannot serve here", "addr", s.addr.String(), "reason", err.Error())
	} else {
		s.cfg.logger.Info("zerohop serves a loopback address on io_uring sockets", "reason", err.Error())
	}
	return s.planUring()
}

// fatalError is a failure of the XSK path that must not make BackendAuto
// fall back: the caller asked for something that does not exist.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

func (e *fatalError) Unwrap() error { return e.err }

func (s *Server) planUring() error {
	n := max(len(s.cfg.queues), 1)
	for i := 0; i < n; i++ {
		core := i % runtime.NumCPU()
		if len(s.cfg.cores) > 0 {
			core = s.cfg.cores[i]
		}
		s.plan = append(s.plan, loopPlan{core: core})
	}
	return nil
}

// openXSK joins the interface's steering program, binds an AF_XDP socket
// on every queue it is to serve and plans the loops: the queues whose
// loops go to the same core share one loop.
//
// Which queues: WithQueues's, or else every RX queue of the interface
// (sysinfo.QueueMap: ethtool channels, else /sys) that no other zerohop
// server holds. AF_XDP allows one process per (interface, queue), so
// servers of one interface divide its queues; what arrives for this
// server on a queue it does not serve goes to the kernel and reaches its
// kernel sockets (the hybrid path), so it is answered all the same.
//
// Which core: WithCores's, or else the CPU the queue's own interrupt is
// affine to where the device has per-queue interrupts, else queue mod the
// usable CPUs (sysinfo.QueueMap says which, and the start-up line shows
// it).
func (s *Server) openXSK() (err error) {
	if s.addr.Port() == 0 {
		return errors.New("needs an explicit port (the XDP program steers by port)")
	}
	if s.addr.Addr().IsLoopback() {
		return errors.New("loopback address: AF_XDP serves a NIC queue; the kernel path is as short on lo")
	}
	iface, err := s.interfaceFor()
	if err != nil {
		return err
	}
	// QueueMap reads the count with an ethtool ioctl on a socket of the
	// calling thread's network namespace, which is right when Listen runs
	// in a namespace entered with setns (whose /sys would show another
	// namespace's interfaces).
	qm, err := sysinfo.InterfaceQueues(iface)
	if err != nil {
		return fmt.Errorf("reading the RX queues of %s: %w", iface, err)
	}
	for _, q := range s.cfg.queues {
		if q >= qm.RXQueues {
			return &fatalError{fmt.Errorf("runtime: WithQueues: %s has %d RX queue(s) (0-%d), not queue %d", iface, qm.RXQueues, qm.RXQueues-1, q)}
		}
	}
	att, err := xskpath.Join(xskpath.Config{Iface: iface, Addr: s.addr, Frames: s.cfg.frames, PinMaps: s.cfg.pinMaps,
		AcceptPartialChecksum: qm.Virtual, OnKeepaliveError: s.keepaliveError()})
	if err != nil {
		if errors.Is(err, bpf.ErrAddrInUse) && !s.cfg.reusePort {
			return &fatalError{fmt.Errorf("runtime: %s: %w: %w (give WithReusePort to every server of the address to share it; the steered traffic stays with one of them)",
				s.addr, ErrAddrInUse, err)}
		}
		return err
	}
	defer func() {
		if err != nil {
			att.Close()
		}
	}()
	holders, err := att.TakenQueues()
	if err != nil {
		return err
	}
	taken := map[int]xskpath.Holder{}
	for _, h := range holders {
		taken[h.Queue] = h
	}
	queues, optional := s.cfg.queues, len(s.cfg.queues) == 0
	if optional {
		// The steering program has socket slots for bpf.MaxQueues queues;
		// what arrives on higher ones goes to the kernel path.
		for q := range min(qm.RXQueues, bpf.MaxQueues) {
			if _, ok := taken[q]; !ok {
				queues = append(queues, q)
			}
		}
		if len(queues) == 0 {
			return fmt.Errorf("every RX queue of %s is held by other zerohop servers: queue %s (AF_XDP allows one process per queue: give the servers of one interface disjoint WithQueues)",
				iface, xskpath.DescribeHolders(holders))
		}
	} else {
		var clash []xskpath.Holder
		for _, q := range queues {
			if h, ok := taken[q]; ok {
				clash = append(clash, h)
			}
		}
		if len(clash) > 0 {
			return fmt.Errorf("WithQueues: queue %s of %s held by other zerohop servers (AF_XDP allows one process per queue: give the servers of one interface disjoint WithQueues, or omit it to serve every free queue)",
				xskpath.DescribeHolders(clash), iface)
		}
	}
	coreOf := map[int]int{}
	for i, q := range queues {
		if len(s.cfg.cores) > 0 {
			coreOf[q] = s.cfg.cores[i]
		} else {
			coreOf[q] = qm.Queues[q].CPU
		}
	}
	skipped, err := att.Open(queues, optional)
	if err != nil {
		return err
	}
	bound := att.Queues()
	byCore := map[int]int{}
	for _, q := range bound {
		li, ok := byCore[coreOf[q]]
		if !ok {
			li = len(s.plan)
			byCore[coreOf[q]] = li
			s.plan = append(s.plan, loopPlan{core: coreOf[q]})
		}
		s.plan[li].queues = append(s.plan[li].queues, q)
	}
	s.xsk, s.queueMap, s.cfg.iface = att, &qm, iface
	s.warnUnserved(qm.RXQueues, bound, holders, skipped)
	return nil
}

// warnUnserved says which queues of the interface this server does not
// serve through AF_XDP, and that what arrives there for it goes through
// the kernel path: at WARN when another server's holding them made it so,
// at INFO when it was chosen (WithQueues).
func (s *Server) warnUnserved(rxQueues int, bound []int, holders []xskpath.Holder, skipped []error) {
	var unserved []string
	for q := range rxQueues {
		if !slices.Contains(bound, q) {
			unserved = append(unserved, fmt.Sprint(q))
		}
	}
	if len(unserved) == 0 {
		return
	}
	args := []any{"iface", s.cfg.iface, "addr", s.addr.String(), "served", joinInts(bound), "unserved", strings.Join(unserved, ",")}
	if len(holders) > 0 || len(skipped) > 0 {
		if len(holders) > 0 {
			args = append(args, "held_by", xskpath.DescribeHolders(holders))
		}
		if len(skipped) > 0 {
			args = append(args, "bind_failed", errors.Join(skipped...).Error())
		}
		s.cfg.logger.Warn("zerohop: RX queues held by other AF_XDP users are served through the kernel path (this server's kernel sockets answer what arrives there)", args...)
		return
	}
	s.cfg.logger.Info("zerohop: RX queues left out (by WithQueues, or beyond the steering program's bpf.MaxQueues) are served through the kernel path (this server's kernel sockets answer what arrives there)", args...)
}

// keepaliveError logs the steering program's heartbeat failures: the
// first at WARN, then at most one a minute, and a takeover at ERROR.
func (s *Server) keepaliveError() func(error) {
	var last time.Time
	return func(err error) {
		if errors.Is(err, bpf.ErrTakenOver) {
			s.cfg.logger.Error("zerohop: another server took over this server's port on the interface (this server stopped heartbeating for over a second)", "err", err)
			return
		}
		if now := time.Now(); last.IsZero() || now.Sub(last) > time.Minute {
			last = now
			s.cfg.logger.Warn("zerohop: heartbeat of the XDP steering slot failed (after a second without one the port goes to the kernel path)", "err", err)
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

// interfaceFor finds the interface to serve on: WithInterface's (which
// must exist), or the one holding the listen address.
func (s *Server) interfaceFor() (string, error) {
	if s.cfg.iface != "" {
		if _, err := net.InterfaceByName(s.cfg.iface); err != nil {
			return "", &fatalError{fmt.Errorf("runtime: interface %q (WithInterface): %w", s.cfg.iface, err)}
		}
		return s.cfg.iface, nil
	}
	ip := s.addr.Addr()
	if !ip.IsValid() || ip.IsUnspecified() {
		return "", errors.New("no interface: listening on a wildcard address; give WithInterface")
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("listing interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip.AsSlice()) {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface holds %s; give WithInterface", ip)
}

// claimAddr claims an explicit address before anything else is set up,
// so a second server on it fails with "address in use" whichever backend
// it would pick (a port the kernel picks is claimed in openSockets).
func (s *Server) claimAddr() (err error) {
	if s.addr.Port() == 0 && s.cfg.tcp {
		// The kernel's free UDP port may be a busy TCP port: pick one that
		// is free for both, and claim it like an explicit one.
		if s.addr, err = freePortForBoth(s.addr); err != nil {
			return err
		}
	}
	if s.addr.Port() == 0 {
		return nil
	}
	probe := []int{unix.SOCK_DGRAM}
	if s.cfg.tcp {
		probe = append(probe, unix.SOCK_STREAM)
	}
	s.guard, err = sockpath.ClaimAddr(s.addr, s.cfg.reusePort, probe...)
	return err
}

// openSockets opens every loop's kernel sockets and makes the loops with
// their sources.
func (s *Server) openSockets() (err error) {
	s.core = engine.NewServer(engine.Config{Logger: s.cfg.logger, BusyPoll: s.cfg.busyPoll,
		IdleTimeout: s.cfg.idleTimeout, Workers: s.cfg.workers, WorkQueue: s.cfg.workQueue,
		Loops: len(s.plan), Poison: s.cfg.poison})
	xskSockets := map[int]*xskpath.Socket{}
	if s.xsk != nil {
		for _, sock := range s.xsk.Sockets() {
			xskSockets[sock.Queue()] = sock
		}
	}
	enterEvery := 1
	if s.xsk != nil {
		enterEvery = xskEnterEvery
	}
	for i, p := range s.plan {
		fd, bound, err := sockpath.OpenUDP(s.addr)
		if err != nil {
			return err
		}
		if s.addr.Port() == 0 {
			// The kernel picked the port: claim it now, and let every other
			// loop's socket join it.
			s.addr = bound
			if s.guard, err = sockpath.ClaimAddr(s.addr, s.cfg.reusePort); err != nil {
				sockpath.CloseFd(&fd)
				return err
			}
		}
		queue := i
		if len(p.queues) > 0 {
			queue = p.queues[0]
		}
		l, err := engine.NewLoop(engine.LoopConfig{Index: i, Queue: queue, Core: p.core,
			SQEntries: loopSQEntries, CQEntries: loopCQEntries, BusyPoll: s.cfg.busyPoll,
			IdleTimeout: s.cfg.idleTimeout, EnterEvery: enterEvery, Warn: s.core.Warn, OnFail: s.core.Fail}, s.core.Pool)
		if err != nil {
			sockpath.CloseFd(&fd)
			return err
		}
		s.loops = append(s.loops, l)
		l.Dispatcher.Init(s.core, i, queue, &l.Counters)
		for _, q := range p.queues {
			l.Add(xskSockets[q])
		}
		l.Add(sockpath.NewUDPServer(fd))
		if s.cfg.tcp {
			lfd, err := sockpath.OpenTCPListener(s.addr)
			if err != nil {
				return err
			}
			t := sockpath.NewTCPServer(lfd)
			s.tcps = append(s.tcps, t)
			l.Add(t)
		}
	}
	return nil
}

// describeLoops is the queue → IRQ → core map of the start-up log line:
// "queue0(no irq),queue2(no irq)→cpu0 queue1(irq 45)→cpu1", or on the
// uring backend "loop0→cpu0 loop1→cpu1".
func (s *Server) describeLoops() string {
	var b strings.Builder
	for i, p := range s.plan {
		if i > 0 {
			b.WriteString(" ")
		}
		if len(p.queues) == 0 {
			fmt.Fprintf(&b, "loop%d→cpu%d", i, p.core)
			continue
		}
		for j, q := range p.queues {
			if j > 0 {
				b.WriteString(",")
			}
			irq := "no irq"
			if s.queueMap != nil && q < len(s.queueMap.Queues) && s.queueMap.Queues[q].IRQ >= 0 {
				irq = fmt.Sprintf("irq %d", s.queueMap.Queues[q].IRQ)
			}
			fmt.Fprintf(&b, "queue%d(%s)", q, irq)
		}
		fmt.Fprintf(&b, "→cpu%d", p.core)
	}
	return b.String()
}

// coresFrom says where the loops' cores came from, for the log line.
func (s *Server) coresFrom() string {
	switch {
	case len(s.cfg.cores) > 0:
		return "WithCores"
	case s.queueMap == nil:
		return "loop mod CPUs"
	}
	from := map[sysinfo.CPUSource]bool{}
	for _, p := range s.plan {
		for _, q := range p.queues {
			from[s.queueMap.Queues[q].Source] = true
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

func (s *Server) describe() string {
	transports := "UDP"
	if s.cfg.tcp {
		transports = "UDP and TCP"
	}
	kernel := fmt.Sprintf("%d SO_REUSEPORT kernel socket set(s) (%s) on io_uring, %d-byte frames", len(s.loops), transports, sockpath.MaxDatagram)
	if s.xsk == nil {
		return kernel
	}
	return s.xsk.Describe() + "; hybrid path: " + kernel
}

// freePortForBoth finds a port free for UDP and TCP on addr's address.
func freePortForBoth(addr netip.AddrPort) (netip.AddrPort, error) {
	var last error
	for range 32 {
		fd, bound, err := sockpath.OpenUDP(addr)
		if err != nil {
			return addr, err
		}
		lfd, err := sockpath.OpenTCPListener(bound)
		sockpath.CloseFd(&fd)
		if err == nil {
			sockpath.CloseFd(&lfd)
			return bound, nil
		}
		last = err
	}
	return addr, fmt.Errorf("runtime: no port free for both UDP and TCP on %v: %w", addr.Addr(), last)
}

package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"

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
	FillRingEmpty() []uint64
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
			return fmt.Errorf("runtime: XSK backend forced but unavailable: %w", err)
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
		s.cfg.logger.Warn("zerohop falls back to io_uring sockets", "reason", err.Error())
	} else {
		s.cfg.logger.Info("zerohop serves a loopback address on io_uring sockets", "reason", err.Error())
	}
	return s.planUring()
}

// fatalError is a failure of the XSK path that must not make BackendAuto
// fall back: the caller asked for something that does not exist.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

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

// openXSK attaches the AF_XDP path and plans one loop per core that a
// served queue maps to.
func (s *Server) openXSK() error {
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
	queues := s.cfg.queues
	if len(queues) == 0 {
		n, err := rxQueues(iface)
		if err != nil {
			return err
		}
		for q := 0; q < n; q++ {
			queues = append(queues, q)
		}
	}
	cores := s.cfg.cores
	if len(cores) == 0 {
		for _, q := range queues {
			cores = append(cores, q%runtime.NumCPU())
		}
	}
	byCore := map[int]int{}
	for i, q := range queues {
		li, ok := byCore[cores[i]]
		if !ok {
			li = len(s.plan)
			byCore[cores[i]] = li
			s.plan = append(s.plan, loopPlan{core: cores[i]})
		}
		s.plan[li].queues = append(s.plan[li].queues, q)
	}
	var ordered []int
	for _, p := range s.plan {
		ordered = append(ordered, p.queues...)
	}
	att, err := xskpath.Attach(xskpath.Config{Iface: iface, Addr: s.addr, Queues: ordered,
		Frames: s.cfg.frames, PinMaps: s.cfg.pinMaps})
	if err != nil {
		s.plan = nil
		return err
	}
	s.xsk = att
	s.cfg.iface = iface
	return nil
}

// rxQueues is the number of RX queues the kernel reports for iface, read
// over rtnetlink (IFLA_NUM_RX_QUEUES) rather than /sys, which shows the
// network namespace that mounted it, not the caller's.
func rxQueues(iface string) (int, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return 0, err
	}
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return 0, fmt.Errorf("interface %s: reading links: %w", iface, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return 0, fmt.Errorf("interface %s: reading links: %w", iface, err)
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		if int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))) != ifc.Index {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return 0, fmt.Errorf("interface %s: %w", iface, err)
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.IFLA_NUM_RX_QUEUES && len(a.Value) >= 4 {
				return int(binary.NativeEndian.Uint32(a.Value)), nil
			}
		}
	}
	return 0, fmt.Errorf("interface %s: the kernel reports no RX queue count", iface)
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

// openSockets claims the address, opens every loop's kernel sockets and
// makes the loops with their sources.
func (s *Server) openSockets() (err error) {
	if s.addr.Port() == 0 && s.cfg.tcp {
		// The kernel's free UDP port may be a busy TCP port: pick one that
		// is free for both.
		if s.addr, err = freePortForBoth(s.addr); err != nil {
			return err
		}
	}
	var probe []int
	if s.addr.Port() != 0 {
		probe = append(probe, unix.SOCK_DGRAM)
		if s.cfg.tcp {
			probe = append(probe, unix.SOCK_STREAM)
		}
		if s.guard, err = sockpath.ClaimAddr(s.addr, s.cfg.reusePort, probe...); err != nil {
			return err
		}
	}
	s.core = engine.NewServer(engine.Config{Logger: s.cfg.logger, BusyPoll: s.cfg.busyPoll,
		IdleTimeout: s.cfg.idleTimeout, Workers: s.cfg.workers, WorkQueue: s.cfg.workQueue,
		Loops: len(s.plan), Poison: s.cfg.poison})
	var xskSockets []*xskpath.Socket
	if s.xsk != nil {
		xskSockets = s.xsk.Sockets()
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
		for range p.queues {
			l.Add(xskSockets[0])
			xskSockets = xskSockets[1:]
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

// describeLoops is the queue → core map of the start-up log line.
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
		qs := make([]string, len(p.queues))
		for j, q := range p.queues {
			qs[j] = fmt.Sprint(q)
		}
		fmt.Fprintf(&b, "queue%s→cpu%d", strings.Join(qs, ","), p.core)
	}
	return b.String()
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

package runtime

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"

	"github.com/zerohop/zerohop/runtime/internal/engine"
	"github.com/zerohop/zerohop/runtime/internal/sockpath"
	"github.com/zerohop/zerohop/runtime/internal/xskhook"
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
	var fatal *xskhook.Fatal
	if errors.As(err, &fatal) {
		return fatal.Err
	}
	s.backend, s.reason = BackendUring, "XSK unavailable: "+err.Error()
	if !s.addr.Addr().IsLoopback() {
		s.cfg.logger.Warn("zerohop falls back to io_uring sockets (BackendAuto): AF_XDP cannot serve here", "addr", s.addr.String(), "reason", err.Error())
	} else {
		s.cfg.logger.Info("zerohop serves a loopback address on io_uring sockets", "reason", err.Error())
	}
	return s.planUring()
}

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

// openXSK opens the AF_XDP path (runtime/xdp, see xskpath.Open for how
// it picks queues and cores) and takes its loop plan.
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
	if xskhook.Open == nil {
		return errors.New(`the AF_XDP backend is not linked into this program: import _ "github.com/zerohop/zerohop/runtime/xdp"`)
	}
	path, err := xskhook.Open(xskhook.Request{Iface: iface, Addr: s.addr, Queues: s.cfg.queues, Cores: s.cfg.cores,
		Frames: s.cfg.frames, PinMaps: s.cfg.pinMaps, ReusePort: s.cfg.reusePort, KeepMapped: s.cfg.poison, Logger: s.cfg.logger,
		RequireSealed: s.cfg.sealer != nil && s.cfg.sealer.Mode() == SealStrict})
	if err != nil {
		return err
	}
	for _, l := range path.Loops() {
		s.plan = append(s.plan, loopPlan{queues: l.Queues, core: l.Core, sources: l.Sources})
	}
	s.xsk, s.cfg.iface = path, iface
	return nil
}

// interfaceFor finds the interface to serve on: WithInterface's (which
// must exist), or the one holding the listen address.
func (s *Server) interfaceFor() (string, error) {
	if s.cfg.iface != "" {
		if _, err := net.InterfaceByName(s.cfg.iface); err != nil {
			return "", &xskhook.Fatal{Err: fmt.Errorf("runtime: interface %q (WithInterface): %w", s.cfg.iface, err)}
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
			IdleTimeout: s.cfg.idleTimeout, EnterEvery: enterEvery, Warn: s.core.Warn, OnFail: s.core.Fail,
			KeepBuffers: s.cfg.poison}, s.core.Pool)
		if err != nil {
			sockpath.CloseFd(&fd)
			return err
		}
		s.loops = append(s.loops, l)
		l.Dispatcher.Init(s.core, i, queue, &l.Counters)
		for _, src := range p.sources {
			l.Add(src)
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
	s.installSealer()
	return nil
}

// describeLoops is the queue → IRQ → core map of the start-up log line
// (the AF_XDP path's), or on the uring backend "loop0→cpu0 loop1→cpu1".
func (s *Server) describeLoops() string {
	if s.xsk != nil {
		return s.xsk.DescribeLoops()
	}
	parts := make([]string, len(s.plan))
	for i, p := range s.plan {
		parts[i] = fmt.Sprintf("loop%d→cpu%d", i, p.core)
	}
	return strings.Join(parts, " ")
}

// coresFrom says where the loops' cores came from, for the log line.
func (s *Server) coresFrom() string {
	switch {
	case len(s.cfg.cores) > 0:
		return "WithCores"
	case s.xsk == nil:
		return "loop mod CPUs"
	}
	return s.xsk.CoresFrom()
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

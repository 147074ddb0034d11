package runtime

import (
	"errors"
	"fmt"
	"net"
)

// chooseBackend opens the data path cfg.backend asks for. BackendAuto tries
// XSK and falls back to io_uring sockets, keeping the reason.
func (s *Server) chooseBackend() error {
	switch s.cfg.backend {
	case BackendUring:
		s.backend, s.reason = BackendUring, "forced by WithBackend(BackendUring)"
		return s.openUring()
	case BackendXSK:
		impl, err := newXSKBackend(s)
		if err != nil {
			return fmt.Errorf("runtime: XSK backend forced but unavailable: %w", err)
		}
		s.backend, s.reason, s.impl = BackendXSK, "forced by WithBackend(BackendXSK)", impl
		return nil
	}
	impl, err := newXSKBackend(s)
	if err == nil {
		s.backend, s.impl = BackendXSK, impl
		s.reason = fmt.Sprintf("AF_XDP available on %s", s.cfg.iface)
		return nil
	}
	s.backend, s.reason = BackendUring, "XSK unavailable: "+err.Error()
	s.cfg.logger.Info("zerohop falls back to io_uring sockets", "reason", err.Error())
	return s.openUring()
}

func (s *Server) openUring() error {
	impl, err := newUringBackend(s)
	if err != nil {
		return err
	}
	s.impl = impl
	return nil
}

// interfaceFor finds the interface that holds the listen address, so
// BackendAuto can use XSK without WithInterface.
func (s *Server) interfaceFor() (string, error) {
	if s.cfg.iface != "" {
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

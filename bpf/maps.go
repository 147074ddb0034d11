package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/zerohop/zerohop/internal/leak"
)

// Action is what an ACL rule does with a matching packet.
type Action uint32

// Values of Action; they are the values the XDP program reads.
const (
	Allow Action = 1
	Deny  Action = 2
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("Action(%d)", uint32(a))
}

// ACLRule allows or denies UDP packets from a source prefix to a destination
// port. For a packet the program first takes the longest source prefix among
// the rules for its destination port; only when none matches, the longest
// among the any-port rules (Port 0). No match at all allows.
type ACLRule struct {
	Source netip.Prefix // IPv4 or IPv6; IPv4-mapped IPv6 prefixes are IPv4
	Port   uint16       // destination port; 0 means any port
	Action Action
	// Hits counts packets that matched the rule since it was last written
	// (filled in by ACLRules, ignored by AddACLRule).
	Hits uint64
}

// ServiceFlags modify how the program treats packets for a service.
type ServiceFlags uint32

const (
	// ServicePassToKernel matches the service (counted, subject to the loss
	// knob) but hands its packets to the kernel instead of an XSK socket.
	ServicePassToKernel ServiceFlags = 0x1
)

// Service is a UDP destination steered to the AF_XDP socket of the queue
// the packet arrived on. A service on a specific address takes precedence
// over one on the same port for any address.
type Service struct {
	Port  uint16
	Addr  netip.Addr // zero Addr: any destination address
	ID    uint32     // chosen by the caller, opaque to the program
	Flags ServiceFlags
}

// Counters are the program's packet counters summed over all CPUs. Every
// packet the program saw ends in exactly one of Redirected, Passed,
// ACLDropped and LossDropped; Malformed and NoSocket are parts of Passed.
type Counters struct {
	Seen        uint64 // every packet the program ran on
	Redirected  uint64 // handed to an AF_XDP socket
	Passed      uint64 // handed to the kernel stack
	ACLDropped  uint64 // dropped by a Deny rule
	Malformed   uint64 // truncated or inconsistent headers (passed)
	NoSocket    uint64 // matched a service but its queue had no socket (passed)
	LossDropped uint64 // dropped by the test loss knob
}

// Indexes into the counters map, in the order of enum counter in steer.c.
const (
	counterSeen = iota
	counterRedirected
	counterPassed
	counterACLDropped
	counterMalformed
	counterNoSocket
	counterLossDropped
	counterCount
)

// The program's prefix lengths count the two port bytes before the address.
const (
	aclPortBits   = 16
	v4MappedBits  = 96
	aclAddrBits   = 128
	aclPrefixMax  = aclPortBits + aclAddrBits
	serviceFlagOK = ServicePassToKernel
)

// Maps is a handle on the program's maps: services, ACL, XSK sockets,
// counters and settings. It is safe for concurrent use; every method is one
// or a few map syscalls and nothing runs per packet in Go.
type Maps struct {
	iface string

	mu       sync.RWMutex // guards the fields below against Close
	closed   bool
	xsks     *ebpf.Map
	services *ebpf.Map
	acl      *ebpf.Map
	counters *ebpf.Map
	settings *ebpf.Map
}

func newMaps(iface string, objs *steerMaps) *Maps {
	m := &Maps{
		iface:    iface,
		xsks:     objs.Xsks,
		services: objs.Services,
		acl:      objs.Acl,
		counters: objs.Counters,
		settings: objs.Settings,
	}
	for _, em := range m.all() {
		leak.Track(em.FD())
	}
	return m
}

func (m *Maps) all() []*ebpf.Map {
	return []*ebpf.Map{m.xsks, m.services, m.acl, m.counters, m.settings}
}

// names pairs each map with its name in the ELF and in a pin directory.
func (m *Maps) named() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		steerMapXsks:     m.xsks,
		steerMapServices: m.services,
		steerMapAcl:      m.acl,
		steerMapCounters: m.counters,
		steerMapSettings: m.settings,
	}
}

func (m *Maps) fail(op string, err error) error {
	return &Error{Op: op, Iface: m.iface, Err: err}
}

// use runs fn under the read lock unless the maps are closed.
func (m *Maps) use(op string, fn func() error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return m.fail(op, ErrClosed)
	}
	if err := fn(); err != nil {
		return m.fail(op, err)
	}
	return nil
}

// Close releases the map handles. It does not unpin them (Program.Close
// does that). Closing twice returns nil.
func (m *Maps) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for _, em := range m.all() {
		leak.Untrack(em.FD())
		errs = append(errs, em.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return m.fail("close maps", err)
	}
	return nil
}

// Queues is the number of queue slots for XSK sockets (valid queues are
// 0..Queues()-1).
func (m *Maps) Queues() int { return int(m.xsks.MaxEntries()) }

// SetSocket registers the AF_XDP socket fd (bound to this interface and
// queue) as the destination for service packets arriving on queue. The
// kernel removes the entry when the socket is closed (its packets then
// count as NoSocket and go to the kernel); ClearSocket removes it earlier.
func (m *Maps) SetSocket(queue int, fd int) error {
	return m.use("set socket", func() error {
		if queue < 0 || queue >= m.Queues() {
			return fmt.Errorf("%w: queue %d outside 0..%d", ErrInvalid, queue, m.Queues()-1)
		}
		if fd < 0 {
			return fmt.Errorf("%w: fd %d", ErrInvalid, fd)
		}
		return mapError(m.xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny))
	})
}

// ClearSocket removes the socket registered for queue, if any; packets for
// services on that queue then go to the kernel and count as NoSocket.
func (m *Maps) ClearSocket(queue int) error {
	return m.use("clear socket", func() error {
		if queue < 0 || queue >= m.Queues() {
			return fmt.Errorf("%w: queue %d outside 0..%d", ErrInvalid, queue, m.Queues()-1)
		}
		err := mapError(m.xsks.Delete(uint32(queue)))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}

func serviceKey(port uint16, addr netip.Addr) (steerServiceKey, error) {
	key := steerServiceKey{Port: port}
	if port == 0 {
		return key, fmt.Errorf("%w: service port 0", ErrInvalid)
	}
	if addr.IsValid() {
		if addr.Zone() != "" {
			return key, fmt.Errorf("%w: service address %v has a zone", ErrInvalid, addr)
		}
		if addr.IsUnspecified() {
			return key, fmt.Errorf("%w: service address %v: use the zero netip.Addr for any address", ErrInvalid, addr)
		}
		key.Addr = addr.As16() // IPv4 becomes ::ffff:a.b.c.d
	}
	return key, nil
}

// AddService registers s. It fails with ErrExists when a service with the
// same port and address is registered (remove it first to change it).
func (m *Maps) AddService(s Service) error {
	return m.use("add service", func() error {
		key, err := serviceKey(s.Port, s.Addr)
		if err != nil {
			return err
		}
		if s.Flags&^serviceFlagOK != 0 {
			return fmt.Errorf("%w: unknown service flags %#x", ErrInvalid, uint32(s.Flags))
		}
		value := steerService{Id: s.ID, Flags: uint32(s.Flags)}
		return mapError(m.services.Update(&key, &value, ebpf.UpdateNoExist))
	})
}

// RemoveService removes the service on port and addr (zero Addr: the
// any-address service). ErrNotFound when there is none.
func (m *Maps) RemoveService(port uint16, addr netip.Addr) error {
	return m.use("remove service", func() error {
		key, err := serviceKey(port, addr)
		if err != nil {
			return err
		}
		return mapError(m.services.Delete(&key))
	})
}

// Services lists the registered services in no particular order.
func (m *Maps) Services() ([]Service, error) {
	var out []Service
	err := m.use("list services", func() error {
		var key steerServiceKey
		var value steerService
		it := m.services.Iterate()
		for it.Next(&key, &value) {
			s := Service{Port: key.Port, ID: value.Id, Flags: ServiceFlags(value.Flags)}
			if key.Addr != ([16]byte{}) {
				s.Addr = netip.AddrFrom16(key.Addr).Unmap()
			}
			out = append(out, s)
		}
		return mapError(it.Err())
	})
	return out, err
}

func aclKey(source netip.Prefix, port uint16) (steerAclKey, error) {
	key := steerAclKey{Port: [2]uint8{uint8(port >> 8), uint8(port)}}
	if !source.IsValid() {
		return key, fmt.Errorf("%w: ACL source prefix %v", ErrInvalid, source)
	}
	source = source.Masked()
	addr, bits := source.Addr(), source.Bits()
	if addr.Zone() != "" {
		return key, fmt.Errorf("%w: ACL source %v has a zone", ErrInvalid, source)
	}
	if addr.Is4In6() && bits >= v4MappedBits {
		addr, bits = addr.Unmap(), bits-v4MappedBits
	}
	key.Addr = addr.As16()
	key.Prefixlen = uint32(aclPortBits + bits)
	if addr.Is4() {
		key.Prefixlen += v4MappedBits
	}
	return key, nil
}

// AddACLRule adds r, or replaces the rule with the same source prefix and
// port (resetting its hit count).
func (m *Maps) AddACLRule(r ACLRule) error {
	return m.use("add ACL rule", func() error {
		if r.Action != Allow && r.Action != Deny {
			return fmt.Errorf("%w: ACL action %v", ErrInvalid, r.Action)
		}
		key, err := aclKey(r.Source, r.Port)
		if err != nil {
			return err
		}
		value := steerAclRule{Action: uint32(r.Action)}
		return mapError(m.acl.Update(&key, &value, ebpf.UpdateAny))
	})
}

// RemoveACLRule removes the rule for source and port; ErrNotFound when there
// is none.
func (m *Maps) RemoveACLRule(source netip.Prefix, port uint16) error {
	return m.use("remove ACL rule", func() error {
		key, err := aclKey(source, port)
		if err != nil {
			return err
		}
		return mapError(m.acl.Delete(&key))
	})
}

// ACLRules lists the rules with their hit counts in no particular order.
func (m *Maps) ACLRules() ([]ACLRule, error) {
	var out []ACLRule
	err := m.use("list ACL rules", func() error {
		var key steerAclKey
		var value steerAclRule
		it := m.acl.Iterate()
		for it.Next(&key, &value) {
			bits := int(key.Prefixlen) - aclPortBits
			addr := netip.AddrFrom16(key.Addr)
			if addr.Is4In6() && bits >= v4MappedBits {
				addr, bits = addr.Unmap(), bits-v4MappedBits
			}
			out = append(out, ACLRule{
				Source: netip.PrefixFrom(addr, bits),
				Port:   uint16(key.Port[0])<<8 | uint16(key.Port[1]),
				Action: Action(value.Action),
				Hits:   value.Hits,
			})
		}
		return mapError(it.Err())
	})
	return out, err
}

// Counters returns the packet counters summed over all CPUs. Each counter
// is read separately, so under traffic they are not one atomic snapshot.
func (m *Maps) Counters() (Counters, error) {
	var c Counters
	err := m.use("read counters", func() error {
		fields := [counterCount]*uint64{
			counterSeen:        &c.Seen,
			counterRedirected:  &c.Redirected,
			counterPassed:      &c.Passed,
			counterACLDropped:  &c.ACLDropped,
			counterMalformed:   &c.Malformed,
			counterNoSocket:    &c.NoSocket,
			counterLossDropped: &c.LossDropped,
		}
		var perCPU []uint64
		for index, field := range fields {
			if err := m.counters.Lookup(uint32(index), &perCPU); err != nil {
				return mapError(err)
			}
			for _, v := range perCPU {
				*field += v
			}
		}
		return nil
	})
	return c, err
}

// SetLoss makes the program drop every n-th packet that matches a service
// (counted as LossDropped), starting the count afresh; n = 0 turns it off.
// It exists for tests of retransmission; never set it in production.
func (m *Maps) SetLoss(n uint32) error {
	return m.use("set loss", func() error {
		value := steerSettings{LossEveryN: n}
		return mapError(m.settings.Update(uint32(0), &value, ebpf.UpdateAny))
	})
}

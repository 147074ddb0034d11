package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

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
	// ServiceRequireSealed drops, in the program, every GWIR REQUEST to
	// the service that does not have the SEALED flag (a server that
	// requires sealed frames, runtime.SealStrict), counted as
	// UnsealedDropped: no socket, loop or handler sees it. PINGs and
	// anything that is not GWIR v1 are steered as usual.
	ServiceRequireSealed ServiceFlags = 0x2
)

// Service is a UDP destination steered to the AF_XDP socket that its
// server registered for the queue the packet arrived on. A service on a
// specific address takes precedence over one on the same port for any
// address.
type Service struct {
	Port  uint16
	Addr  netip.Addr // zero Addr: any destination address
	ID    uint32     // chosen by the caller, opaque to the program
	Flags ServiceFlags
	// MaxLen, when not 0, hands frames longer than MaxLen bytes (from the
	// Ethernet header on) to the kernel, counted as Oversize: those that
	// would not fit the server's UMEM frames.
	MaxLen uint32

	// Filled in by Services, ignored by AddService:
	Slot int    // the slot of the server that registered it
	PID  uint32 // that server's pid, as its own pid namespace numbers it
	// Stale: the program ignores the service (passes its packets to the
	// kernel, counted as Stale) because its server has not heartbeaten
	// for StaleAfter or its slot has a new owner.
	Stale bool
}

// Counters are the program's packet counters summed over all CPUs. Every
// packet the program saw ends in exactly one of Redirected, Passed,
// ACLDropped, LossDropped and UnsealedDropped; Malformed, NoSocket, Stale,
// Fragment and Oversize are parts of Passed.
type Counters struct {
	Seen        uint64 // every packet the program ran on
	Redirected  uint64 // handed to an AF_XDP socket
	Passed      uint64 // handed to the kernel stack
	ACLDropped  uint64 // dropped by a Deny rule
	Malformed   uint64 // truncated or inconsistent headers (passed)
	NoSocket    uint64 // a live service, but no socket of its server on the queue (passed)
	LossDropped uint64 // dropped by the test loss knob
	Stale       uint64 // a service whose server is gone or hung (passed)
	Fragment    uint64 // an IP fragment of a UDP datagram (passed; the kernel reassembles)
	Oversize    uint64 // longer than the service's MaxLen (passed)
	// UnsealedDropped: an unsealed GWIR REQUEST to a service that
	// requires sealed frames (ServiceRequireSealed), dropped.
	UnsealedDropped uint64
}

// SlotCounters count, for one server (slot), what its services got: the
// packets redirected to its sockets and, by reason, those its services
// matched that went to the kernel instead.
type SlotCounters struct {
	Redirected uint64 `json:"redirected"`
	NoSocket   uint64 `json:"no_socket"` // no socket of this server on the packet's queue
	Stale      uint64 `json:"stale"`     // the server's heartbeat was older than StaleAfter
	Oversize   uint64 `json:"oversize"`  // longer than the service's MaxLen
}

// SlotInfo describes one taken slot: a server on the interface, or the
// remains of one until the slot is claimed again.
type SlotInfo struct {
	Slot int
	PID  uint32
	// HeartbeatAge is the time since the owner's last heartbeat.
	HeartbeatAge time.Duration
	// Stale: HeartbeatAge exceeds StaleAfter; the program ignores the
	// slot's services.
	Stale bool
	// Queues are the queues the server has sockets on.
	Queues []int
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
	counterStale
	counterFragment
	counterOversize
	counterUnsealedDropped
	counterCount
)

// The program's prefix lengths count the two port bytes before the address.
const (
	aclPortBits   = 16
	v4MappedBits  = 96
	aclAddrBits   = 128
	aclPrefixMax  = aclPortBits + aclAddrBits
	serviceFlagOK = ServicePassToKernel | ServiceRequireSealed
)

// Maps is a handle on the maps of one interface's steering program: the
// services and sockets of every server on it, the ACL, the counters and
// the test loss knob. It is safe for concurrent use; every method is one or
// a few map syscalls and nothing runs per packet in Go.
type Maps struct {
	iface string

	mu           sync.RWMutex // guards the fields below against Close
	closed       bool
	xsks         *ebpf.Map
	services     *ebpf.Map
	slots        *ebpf.Map
	slotCounters *ebpf.Map
	meta         *ebpf.Map
	acl          *ebpf.Map
	aclHits      *ebpf.Map
	counters     *ebpf.Map
	settings     *ebpf.Map
}

func newMaps(iface string, objs *steerMaps) *Maps {
	m := &Maps{
		iface:        iface,
		xsks:         objs.Xsks,
		services:     objs.Services,
		slots:        objs.Slots,
		slotCounters: objs.SlotCounters,
		meta:         objs.Meta,
		acl:          objs.Acl,
		aclHits:      objs.AclHits,
		counters:     objs.Counters,
		settings:     objs.Settings,
	}
	for _, em := range m.all() {
		leak.Track(em.FD())
	}
	return m
}

func (m *Maps) all() []*ebpf.Map {
	return []*ebpf.Map{m.xsks, m.services, m.slots, m.slotCounters, m.meta, m.acl, m.aclHits, m.counters, m.settings}
}

// named pairs each map with its name in the ELF, the kernel and a pin
// directory.
func (m *Maps) named() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		steerMapXsks:         m.xsks,
		steerMapServices:     m.services,
		steerMapSlots:        m.slots,
		steerMapSlotCounters: m.slotCounters,
		steerMapMeta:         m.meta,
		steerMapAcl:          m.acl,
		steerMapAclHits:      m.aclHits,
		steerMapCounters:     m.counters,
		steerMapSettings:     m.settings,
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

// Queues is the number of receive queues a server can register sockets on
// (valid queues are 0..Queues()-1): MaxQueues.
func (m *Maps) Queues() int { return MaxQueues }

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

// Services lists the services of every server on the interface, in no
// particular order.
func (m *Maps) Services() ([]Service, error) {
	var out []Service
	err := m.use("list services", func() error {
		now, err := kernelNow()
		if err != nil {
			return err
		}
		var key steerServiceKey
		var value steerService
		it := m.services.Iterate()
		for it.Next(&key, &value) {
			s := Service{Port: key.Port, ID: value.Id, Flags: ServiceFlags(value.Flags), MaxLen: value.MaxLen,
				Slot: int(value.Slot), Stale: true}
			if key.Addr != ([16]byte{}) {
				s.Addr = netip.AddrFrom16(key.Addr).Unmap()
			}
			var slot steerSlot
			if value.Slot < MaxSlots && m.slots.Lookup(value.Slot, &slot) == nil {
				s.PID = slot.Pid
				s.Stale = slot.Owner != value.Owner || slot.Owner == 0 || stale(now, slot.HeartbeatNs)
			}
			out = append(out, s)
		}
		return mapError(it.Err())
	})
	return out, err
}

// stale is the program's test of a heartbeat: more than StaleAfter away
// from now, on either side.
func stale(now, heartbeat uint64) bool {
	age := int64(now - heartbeat)
	return age > StaleAfter.Nanoseconds() || age < -StaleAfter.Nanoseconds()
}

// Slots lists the taken slots: the servers on the interface, and slots
// whose server is gone and that no server has claimed or swept since.
func (m *Maps) Slots() ([]SlotInfo, error) {
	var out []SlotInfo
	err := m.use("list slots", func() error {
		now, err := kernelNow()
		if err != nil {
			return err
		}
		for i := range uint32(MaxSlots) {
			var slot steerSlot
			if err := m.slots.Lookup(i, &slot); err != nil {
				return mapError(err)
			}
			if slot.Owner == 0 {
				continue
			}
			out = append(out, SlotInfo{Slot: int(i), PID: slot.Pid,
				HeartbeatAge: time.Duration(int64(now - slot.HeartbeatNs)), Stale: stale(now, slot.HeartbeatNs),
				Queues: slotQueues(&slot)})
		}
		return nil
	})
	return out, err
}

// SlotCounters returns the counters of one slot summed over all CPUs.
func (m *Maps) SlotCounters(slot int) (SlotCounters, error) {
	var c SlotCounters
	err := m.use("read slot counters", func() error {
		if slot < 0 || slot >= MaxSlots {
			return fmt.Errorf("%w: slot %d outside 0..%d", ErrInvalid, slot, MaxSlots-1)
		}
		var perCPU []steerSlotCounters
		if err := m.slotCounters.Lookup(uint32(slot), &perCPU); err != nil {
			return mapError(err)
		}
		for _, v := range perCPU {
			c.Redirected += v.Redirected
			c.NoSocket += v.NoSocket
			c.Stale += v.Stale
			c.Oversize += v.Oversize
		}
		return nil
	})
	return c, err
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
		var old steerAclRule
		existed := m.acl.Lookup(&key, &old) == nil
		// The counter first: a packet matching the rule finds it.
		zeros := make([]uint64, ebpf.MustPossibleCPU())
		if err := m.aclHits.Update(&key, zeros, ebpf.UpdateAny); err != nil {
			return mapError(err)
		}
		value := steerAclRule{Action: uint32(r.Action), Prefixlen: key.Prefixlen}
		if err := m.acl.Update(&key, &value, ebpf.UpdateAny); err != nil {
			if !existed {
				_ = m.aclHits.Delete(&key) // no counter without its rule
			}
			return mapError(err)
		}
		return nil
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
		if err := m.acl.Delete(&key); err != nil {
			return mapError(err)
		}
		if err := m.aclHits.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return mapError(err)
		}
		return nil
	})
}

// ACLRules lists the rules with their hit counts in no particular order.
func (m *Maps) ACLRules() ([]ACLRule, error) {
	var out []ACLRule
	err := m.use("list ACL rules", func() error {
		var key steerAclKey
		var value steerAclRule
		var perCPU []uint64
		it := m.acl.Iterate()
		for it.Next(&key, &value) {
			var hits uint64
			if err := m.aclHits.Lookup(&key, &perCPU); err == nil {
				for _, v := range perCPU {
					hits += v
				}
			} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
				return mapError(err)
			}
			bits := int(key.Prefixlen) - aclPortBits
			addr := netip.AddrFrom16(key.Addr)
			if addr.Is4In6() && bits >= v4MappedBits {
				addr, bits = addr.Unmap(), bits-v4MappedBits
			}
			out = append(out, ACLRule{
				Source: netip.PrefixFrom(addr, bits),
				Port:   uint16(key.Port[0])<<8 | uint16(key.Port[1]),
				Action: Action(value.Action),
				Hits:   hits,
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
			counterSeen:            &c.Seen,
			counterRedirected:      &c.Redirected,
			counterPassed:          &c.Passed,
			counterACLDropped:      &c.ACLDropped,
			counterMalformed:       &c.Malformed,
			counterNoSocket:        &c.NoSocket,
			counterLossDropped:     &c.LossDropped,
			counterStale:           &c.Stale,
			counterFragment:        &c.Fragment,
			counterOversize:        &c.Oversize,
			counterUnsealedDropped: &c.UnsealedDropped,
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

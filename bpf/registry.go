package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The registry: how servers that share a program divide it.
//
//   - A server owns one slot (0..MaxSlots-1) for its life, by holding the
//     slot's lock (see nslock.go), and a random owner token it writes into
//     slots[slot] with its heartbeats.
//   - Its services carry its slot and token; its sockets sit at
//     xsks[slot*MaxQueues+queue]. The program steers a packet of a service
//     only while slots[slot] holds the service's token and a heartbeat
//     younger than StaleAfter.
//   - Claiming a slot, registering or withdrawing a service and sweeping
//     happen under the registry lock, so no two servers edit the services
//     at once and a slot's leftovers are gone before its new owner uses it.
//
// An entry is live when its slot holds its token, the slot's lock is held
// and its heartbeat is fresh. A new server may take over any other entry
// at once: that of a server that exited or was killed (its lock is free)
// and that of one that stopped heartbeating (hung or stopped: the program
// already passes its packets to the kernel). Sweep deletes the entries of
// servers that are gone, not those of hung ones, whose Heartbeat reports
// ErrTakenOver should they resume after a takeover.

// ErrAddrInUse: a live service of another server on the interface has the
// same port and address, or one of them is the any-address service of the
// port. Two servers never share a port on one interface: the queues of an
// interface cannot be shared by the AF_XDP sockets of two processes (the
// second bind of a queue fails with EBUSY), so there would be no socket to
// share it with. The error also matches unix.EADDRINUSE.
var ErrAddrInUse = errors.New("address in use")

// ErrTakenOver: Heartbeat found a service of this server registered by
// another one, which took it over while this one was not heartbeating.
var ErrTakenOver = errors.New("service taken over by another server")

// registryLockBudget bounds the wait for the registry lock.
const registryLockBudget = 5 * time.Second

func (p *Program) lockRegistry() (int, error) {
	return p.ns.lock(lockName(p.progID, "registry"), registryLockBudget)
}

// claimSlot takes the first free slot and clears what a former owner left.
func (p *Program) claimSlot() error {
	reg, err := p.lockRegistry()
	if err != nil {
		return fmt.Errorf("claiming a slot: %w", err)
	}
	defer unlock(reg)
	for slot := range MaxSlots {
		fd, err := p.ns.tryLock(slotLockName(p.progID, slot))
		if errors.Is(err, errLockHeld) {
			continue
		}
		if err != nil {
			return fmt.Errorf("claiming a slot: %w", err)
		}
		p.slot, p.slotFD = slot, fd
		break
	}
	if p.slot < 0 {
		return fmt.Errorf("%w: all %d slots of the steering program on %s are taken", ErrFull, MaxSlots, p.iface)
	}
	if err := p.purgeSlot(); err != nil {
		return fmt.Errorf("clearing slot %d: %w", p.slot, err)
	}
	return p.Heartbeat()
}

// purgeSlot removes what a former owner of the slot left: services, sockets
// (the kernel removes those of closed sockets; a descriptor inherited by
// another process would keep one) and counters.
func (p *Program) purgeSlot() error {
	var key steerServiceKey
	var value steerService
	var doomed []steerServiceKey
	it := p.services.Iterate()
	for it.Next(&key, &value) {
		if value.Slot == uint32(p.slot) {
			doomed = append(doomed, key)
		}
	}
	if err := it.Err(); err != nil {
		return mapError(err)
	}
	for _, k := range doomed {
		if err := p.services.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return mapError(err)
		}
	}
	for q := range MaxQueues {
		if err := p.xsks.Delete(p.xskIndex(q)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return mapError(err)
		}
	}
	zero := make([]steerSlotCounters, ebpf.MustPossibleCPU())
	return mapError(p.slotCounters.Update(uint32(p.slot), zero, ebpf.UpdateAny))
}

func (p *Program) xskIndex(queue int) uint32 { return uint32(p.slot*MaxQueues + queue) }

// Heartbeat tells the program this server is alive for another StaleAfter.
// The keepalive goroutine calls it (see Options.HeartbeatInterval). It
// also checks that this server's services are still its own; those another
// server took over while this one was stale are forgotten and reported
// with ErrTakenOver.
func (p *Program) Heartbeat() error {
	return p.use("heartbeat", func() error {
		now, err := kernelNow()
		if err != nil {
			return err
		}
		p.ownMu.Lock()
		defer p.ownMu.Unlock()
		if err := p.writeSlot(now); err != nil {
			return err
		}
		var lost []error
		for key, s := range p.own {
			var value steerService
			err := p.services.Lookup(&key, &value)
			if err == nil && value.Owner == p.token {
				continue
			}
			if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return mapError(err)
			}
			delete(p.own, key)
			lost = append(lost, fmt.Errorf("%w: %s", ErrTakenOver, describe(s.Addr, s.Port)))
		}
		return errors.Join(lost...)
	})
}

// writeSlot writes this server's slot record: heartbeat, token, pid and
// the queues it has sockets on. The caller holds ownMu.
func (p *Program) writeSlot(now uint64) error {
	rec := steerSlot{HeartbeatNs: now, Owner: p.token, Pid: p.pid}
	for q := range p.sockets {
		rec.Queues[q/64] |= 1 << (q % 64)
	}
	return mapError(p.slots.Update(uint32(p.slot), &rec, ebpf.UpdateExist))
}

// setSocketBit records queue in p.sockets and publishes it at once.
func (p *Program) setSocketBit(queue int, on bool) error {
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	if on {
		p.sockets[queue] = true
	} else {
		delete(p.sockets, queue)
	}
	now, err := kernelNow()
	if err != nil {
		return err
	}
	return p.writeSlot(now)
}

// QueuesOfOthers returns the queues on which other live servers of the
// interface have sockets: a queue one of them holds cannot be bound by
// this process (the kernel answers EBUSY), so its packets for this
// server's services go to the kernel. Two servers starting at the same
// moment may both see a queue free; the second bind then fails.
func (p *Program) QueuesOfOthers() ([]int, error) {
	var out []int
	err := p.use("list queues of other servers", func() error {
		for slot := range uint32(MaxSlots) {
			var rec steerSlot
			if slot == uint32(p.slot) {
				continue
			}
			if err := p.slots.Lookup(slot, &rec); err != nil {
				return mapError(err)
			}
			if rec.Owner == 0 {
				continue
			}
			held, err := p.probe.held(slotLockName(p.progID, int(slot)))
			if err != nil {
				return err
			}
			if held {
				out = append(out, slotQueues(&rec)...)
			}
		}
		return nil
	})
	slices.Sort(out)
	return slices.Compact(out), err
}

func slotQueues(rec *steerSlot) []int {
	var out []int
	for q := range MaxQueues {
		if rec.Queues[q/64]&(1<<(q%64)) != 0 {
			out = append(out, q)
		}
	}
	return out
}

func describe(addr netip.Addr, port uint16) string {
	if !addr.IsValid() {
		return fmt.Sprintf("port %d (any address)", port)
	}
	return netip.AddrPortFrom(addr, port).String()
}

// alive reports whether the entry's server is live (see the registry
// comment); withFresh also asks for a fresh heartbeat.
func (p *Program) alive(value *steerService, now uint64, withFresh bool) (bool, *steerSlot, error) {
	var slot steerSlot
	if value.Slot >= MaxSlots {
		return false, nil, nil
	}
	if err := p.slots.Lookup(value.Slot, &slot); err != nil {
		return false, nil, mapError(err)
	}
	if slot.Owner == 0 || slot.Owner != value.Owner {
		return false, &slot, nil
	}
	if withFresh && stale(now, slot.HeartbeatNs) {
		return false, &slot, nil
	}
	held, err := p.probe.held(slotLockName(p.progID, int(value.Slot)))
	return held, &slot, err
}

// AddService registers s as a service of this server. It fails with
// ErrExists when this server registered it already and with ErrAddrInUse
// when a live service of another server has the same port and address, or
// one of the two is the port's any-address service. A service of a server
// that is gone or not heartbeating is taken over at once.
func (p *Program) AddService(s Service) error {
	return p.use("add service", func() error {
		key, err := serviceKey(s.Port, s.Addr)
		if err != nil {
			return err
		}
		if s.Flags&^serviceFlagOK != 0 {
			return fmt.Errorf("%w: unknown service flags %#x", ErrInvalid, uint32(s.Flags))
		}
		reg, err := p.lockRegistry()
		if err != nil {
			return err
		}
		defer unlock(reg)
		now, err := kernelNow()
		if err != nil {
			return err
		}
		var k steerServiceKey
		var v steerService
		it := p.services.Iterate()
		for it.Next(&k, &v) {
			if k.Port != key.Port || (k.Addr != key.Addr && k.Addr != ([16]byte{}) && key.Addr != ([16]byte{})) {
				continue
			}
			if v.Owner == p.token {
				if k == key {
					return fmt.Errorf("%w: %s is registered by this server already", ErrExists, describe(s.Addr, s.Port))
				}
				continue // this server's own any/specific pair is its business
			}
			live, slot, err := p.alive(&v, now, true)
			if err != nil {
				return err
			}
			if live {
				other := describe(s.Addr, s.Port)
				if k != key {
					other = fmt.Sprintf("%s (it serves %s)", other, describeKey(k))
				}
				return fmt.Errorf("%w (%w): %s is served by another zerohop server on %s (pid %d, slot %d)",
					ErrAddrInUse, unix.EADDRINUSE, other, p.iface, slot.Pid, v.Slot)
			}
		}
		if err := it.Err(); err != nil {
			return mapError(err)
		}
		value := steerService{Slot: uint32(p.slot), Flags: uint32(s.Flags), Id: s.ID, MaxLen: s.MaxLen, Owner: p.token}
		if err := p.services.Update(&key, &value, ebpf.UpdateAny); err != nil {
			return mapError(err)
		}
		p.ownMu.Lock()
		p.own[key] = s
		p.ownMu.Unlock()
		return nil
	})
}

func describeKey(k steerServiceKey) string {
	if k.Addr == ([16]byte{}) {
		return describe(netip.Addr{}, k.Port)
	}
	return describe(netip.AddrFrom16(k.Addr).Unmap(), k.Port)
}

// RemoveService withdraws this server's service on port and addr (zero
// Addr: the any-address service). ErrNotFound when this server has none
// there (another server's service is never touched).
func (p *Program) RemoveService(port uint16, addr netip.Addr) error {
	return p.use("remove service", func() error {
		key, err := serviceKey(port, addr)
		if err != nil {
			return err
		}
		reg, err := p.lockRegistry()
		if err != nil {
			return err
		}
		defer unlock(reg)
		p.ownMu.Lock()
		defer p.ownMu.Unlock()
		return p.removeOwn(key)
	})
}

// removeOwn deletes key if it is this server's; the caller holds the
// registry lock and ownMu.
func (p *Program) removeOwn(key steerServiceKey) error {
	delete(p.own, key)
	var value steerService
	if err := p.services.Lookup(&key, &value); err != nil {
		return mapError(err)
	}
	if value.Owner != p.token {
		return fmt.Errorf("%w: %s belongs to another server", ErrNotFound, describeKey(key))
	}
	return mapError(p.services.Delete(&key))
}

// SetSocket registers the AF_XDP socket fd, bound to this interface and
// queue, as this server's destination for its services' packets arriving
// on queue. The socket must be bound to exactly that queue of this
// interface: the kernel drops what the program redirects to a socket bound
// elsewhere. The kernel removes the entry when the socket is closed (its
// packets then count as NoSocket and go to the kernel); ClearSocket
// removes it earlier.
func (p *Program) SetSocket(queue int, fd int) error {
	return p.use("set socket", func() error {
		if queue < 0 || queue >= MaxQueues {
			return fmt.Errorf("%w: queue %d outside 0..%d", ErrInvalid, queue, MaxQueues-1)
		}
		if fd < 0 {
			return fmt.Errorf("%w: fd %d", ErrInvalid, fd)
		}
		if err := p.xsks.Update(p.xskIndex(queue), uint32(fd), ebpf.UpdateAny); err != nil {
			return mapError(err)
		}
		return p.setSocketBit(queue, true)
	})
}

// ClearSocket removes this server's socket for queue, if any; its
// services' packets on that queue then go to the kernel (NoSocket).
func (p *Program) ClearSocket(queue int) error {
	return p.use("clear socket", func() error {
		if queue < 0 || queue >= MaxQueues {
			return fmt.Errorf("%w: queue %d outside 0..%d", ErrInvalid, queue, MaxQueues-1)
		}
		err := mapError(p.xsks.Delete(p.xskIndex(queue)))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return p.setSocketBit(queue, false)
	})
}

// Sweep deletes the services of servers that are gone (their slot's lock
// is free, or the slot has a new owner) and frees their slots' records;
// it returns how many services it deleted. The program ignores such
// entries already, so Sweep only makes room and keeps Services truthful.
// The keepalive goroutine calls it about once a second.
func (p *Program) Sweep() (int, error) {
	removed := 0
	err := p.use("sweep", func() error {
		reg, err := p.lockRegistry()
		if err != nil {
			return err
		}
		defer unlock(reg)
		var k steerServiceKey
		var v steerService
		var doomed []steerServiceKey
		it := p.services.Iterate()
		for it.Next(&k, &v) {
			if v.Owner == p.token {
				continue
			}
			live, _, err := p.alive(&v, 0, false)
			if err != nil {
				return err
			}
			if !live {
				doomed = append(doomed, k)
			}
		}
		if err := it.Err(); err != nil {
			return mapError(err)
		}
		for _, k := range doomed {
			if err := p.services.Delete(&k); err == nil {
				removed++
			} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
				return mapError(err)
			}
		}
		for slot := range uint32(MaxSlots) {
			var rec steerSlot
			if slot == uint32(p.slot) || p.slots.Lookup(slot, &rec) != nil || rec.Owner == 0 {
				continue
			}
			held, err := p.probe.held(slotLockName(p.progID, int(slot)))
			if err != nil {
				return err
			}
			if !held {
				if err := p.slots.Update(slot, &steerSlot{}, ebpf.UpdateExist); err != nil {
					return mapError(err)
				}
			}
		}
		return nil
	})
	return removed, err
}

// othersAlive reports whether another server holds a slot.
func (p *Program) othersAlive() (bool, error) {
	for slot := range MaxSlots {
		if slot == p.slot {
			continue
		}
		held, err := p.probe.held(slotLockName(p.progID, slot))
		if err != nil || held {
			return held, err
		}
	}
	return false, nil
}

// leave withdraws this server: services first (nothing more is steered to
// its sockets), then sockets, then its slot record. A registry lock that
// cannot be had does not stop it: deleting only its own entries is safe.
func (p *Program) leave() error {
	var errs []error
	reg, err := p.lockRegistry()
	if err != nil {
		errs = append(errs, err)
	}
	defer unlock(reg)
	p.Maps.mu.RLock()
	defer p.Maps.mu.RUnlock()
	if p.Maps.closed {
		return nil
	}
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	for key := range p.own {
		if err := p.removeOwn(key); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	for q := range p.sockets {
		if err := p.xsks.Delete(p.xskIndex(q)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, mapError(err))
		}
	}
	clear(p.sockets)
	if err := p.slots.Update(uint32(p.slot), &steerSlot{}, ebpf.UpdateExist); err != nil {
		errs = append(errs, mapError(err))
	}
	return errors.Join(errs...)
}

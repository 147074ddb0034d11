package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/leak"
)

// The node table: one BPF hash map per host (one kernel) that every zerohop
// process shares, whatever its network or mount namespace, holding the
// services the servers on the node offer (service name, address and port,
// version, zone, weight, health) so that clients on the node find them
// without a control plane. Servers write their own entries and heartbeat
// them; clients list them.
//
// Finding it. A BPF map has a host-wide id, so the table is found by
// walking the ids of all maps for one named NodeTableName with this
// layout: that works from every namespace of the host, where pins would
// not (each `ip netns exec` has its own /sys and bpffs). When no table
// exists, OpenNodeTable creates one and walks again; of several tables
// (two processes created one at the same moment) every process takes the
// one with the lowest id, so they converge and the other is freed when its
// creator closes it. With NodeOptions.Pin the table is also pinned at
// NodePinPath for readers of this mount namespace without CAP_SYS_ADMIN.
//
// Limits. Walking and opening maps by id needs CAP_SYS_ADMIN in the
// initial user namespace (a container without it must be given the pin).
// The table lives while a zerohop process holds it (or its pin exists):
// with the last process gone, it is gone, as are the services it named.
// Liveness is by heartbeat alone (NodeStaleAfter): network-namespace
// scoped locks cannot be shared across namespaces; a killed server's
// entries are reported Stale after NodeStaleAfter and deleted by the next
// Sweep of any process. An address is the server's own, valid in its
// network namespace (NetnsInode tells the namespace apart): a client in
// another namespace reaches it only if routing between them exists.
// Registrations of one key by two servers at once are not exclusive: the
// later write wins and the earlier server's Heartbeat reports
// ErrTakenOver.

// NodeTableName is the kernel's name of the node table map; the layout
// version is part of it, so tables of different layouts never mix.
const NodeTableName = "zh_node_v1"

// NodePinPath is where NodeOptions.Pin pins the node table.
const NodePinPath = DefaultPinRoot + "/node/" + NodeTableName

// NodeStaleAfter is how long after its last heartbeat an entry is Stale
// (and may be swept or taken over); servers heartbeat every
// DefaultNodeHeartbeatInterval. It matches the 3 s default lease of the
// etcd registry, so both discovery paths drop a dead server alike.
const NodeStaleAfter = 3 * time.Second

// DefaultNodeHeartbeatInterval is the node table's keepalive period.
const DefaultNodeHeartbeatInterval = time.Second

const nodeMaxEntries = 4096

// Field sizes of an entry; longer strings are refused (ErrInvalid).
const (
	NodeServiceMax = 63
	NodeVersionMax = 31
	NodeZoneMax    = 31
)

// NodeHealth is an endpoint's state as its server reports it.
type NodeHealth uint32

const (
	// NodeServing: taking calls.
	NodeServing NodeHealth = 1
	// NodeDraining: finishing its calls: send it no new ones.
	NodeDraining NodeHealth = 2
	// NodeNotServing: registered but not taking calls; resolvers report
	// it unhealthy.
	NodeNotServing NodeHealth = 3
)

func (h NodeHealth) String() string {
	switch h {
	case NodeServing:
		return "serving"
	case NodeDraining:
		return "draining"
	case NodeNotServing:
		return "not serving"
	}
	return fmt.Sprintf("NodeHealth(%d)", uint32(h))
}

// NodeEndpoint is one entry of the node table.
type NodeEndpoint struct {
	Service string         // "pkg.Service", at most NodeServiceMax bytes
	Addr    netip.AddrPort // where it serves, in its network namespace
	Version string
	Zone    string
	Weight  uint32
	Health  NodeHealth // zero means NodeServing
	// Ifindex is the interface its XDP steering is on (0: none), in its
	// network namespace.
	Ifindex int

	// Filled in by Register (from the calling thread) and List:
	NetnsInode uint64 // the inode of its network namespace (nsfs)
	PID        uint32 // its server's pid, in the server's pid namespace
	// Filled in by List:
	HeartbeatAge time.Duration
	Stale        bool // no heartbeat for NodeStaleAfter
}

// Layout of a key (32 bytes) and value (160 bytes), native endian.
const (
	nodeKeySize   = 32
	nodeValueSize = 64 + 32 + 32 + 4*4 + 8 + 8
)

func nodeSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: NodeTableName, Type: ebpf.Hash, KeySize: nodeKeySize, ValueSize: nodeValueSize,
		MaxEntries: nodeMaxEntries, Flags: unix.BPF_F_NO_PREALLOC}
}

type nodeKey [nodeKeySize]byte

func makeNodeKey(addr netip.AddrPort, netns uint64) nodeKey {
	var k nodeKey
	a := addr.Addr().As16()
	copy(k[0:16], a[:])
	binary.NativeEndian.PutUint16(k[16:], addr.Port())
	binary.NativeEndian.PutUint64(k[24:], netns)
	return k
}

func (k nodeKey) addr() (netip.AddrPort, uint64) {
	a := netip.AddrFrom16([16]byte(k[0:16])).Unmap()
	return netip.AddrPortFrom(a, binary.NativeEndian.Uint16(k[16:])), binary.NativeEndian.Uint64(k[24:])
}

type nodeValue struct {
	service, version, zone string
	weight                 uint32
	health                 NodeHealth
	pid                    uint32
	ifindex                uint32
	heartbeatNs            uint64
	owner                  uint64
}

func putString(b []byte, s string) { copy(b, s) }

func getString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func (v *nodeValue) marshal() []byte {
	b := make([]byte, nodeValueSize)
	putString(b[0:64], v.service)
	putString(b[64:96], v.version)
	putString(b[96:128], v.zone)
	binary.NativeEndian.PutUint32(b[128:], v.weight)
	binary.NativeEndian.PutUint32(b[132:], uint32(v.health))
	binary.NativeEndian.PutUint32(b[136:], v.pid)
	binary.NativeEndian.PutUint32(b[140:], v.ifindex)
	binary.NativeEndian.PutUint64(b[144:], v.heartbeatNs)
	binary.NativeEndian.PutUint64(b[152:], v.owner)
	return b
}

func unmarshalNodeValue(b []byte) nodeValue {
	return nodeValue{
		service: getString(b[0:64]), version: getString(b[64:96]), zone: getString(b[96:128]),
		weight: binary.NativeEndian.Uint32(b[128:]), health: NodeHealth(binary.NativeEndian.Uint32(b[132:])),
		pid: binary.NativeEndian.Uint32(b[136:]), ifindex: binary.NativeEndian.Uint32(b[140:]),
		heartbeatNs: binary.NativeEndian.Uint64(b[144:]), owner: binary.NativeEndian.Uint64(b[152:]),
	}
}

// NodeOptions configure OpenNodeTable.
type NodeOptions struct {
	// Pin also pins the table at NodePinPath (this mount namespace), and
	// OpenNodeTable tries that pin before walking the map ids.
	Pin bool
	// HeartbeatInterval: how often a goroutine heartbeats this process's
	// entries and sweeps stale ones; zero means
	// DefaultNodeHeartbeatInterval, negative means no goroutine (call
	// Heartbeat at least every NodeStaleAfter/2, and Sweep).
	HeartbeatInterval time.Duration
	// OnKeepaliveError receives the goroutine's errors (ErrTakenOver).
	OnKeepaliveError func(error)
}

// NodeTable is a handle on the node table. It is safe for concurrent use.
type NodeTable struct {
	m     *ebpf.Map
	id    uint32
	token uint64
	pid   uint32

	mu     sync.Mutex
	closed bool
	own    map[nodeKey]NodeEndpoint

	onError  func(error)
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

// OpenNodeTable finds the node table (see the comment above NodeTableName
// for how), creating it when there is none.
func OpenNodeTable(opts NodeOptions) (*NodeTable, error) {
	fail := func(err error) (*NodeTable, error) { return nil, &Error{Op: "open node table", Err: err} }
	m, err := findNodeTable(opts.Pin)
	if err != nil {
		return fail(err)
	}
	if m == nil {
		created, err := ebpf.NewMap(nodeSpec())
		if err != nil {
			return fail(fmt.Errorf("creating the node table (needs CAP_BPF): %w", err))
		}
		// Walk again: a table another process created meanwhile with a
		// lower id wins, and ours is dropped.
		m, err = findNodeTable(false)
		if err != nil {
			created.Close()
			return fail(err)
		}
		if m == nil {
			m = created // cannot happen: ours is there; keep it anyway
		} else {
			created.Close()
		}
	}
	t := &NodeTable{m: m, own: map[nodeKey]NodeEndpoint{}, pid: uint32(os.Getpid())}
	if info, err := m.Info(); err == nil {
		if id, ok := info.ID(); ok {
			t.id = uint32(id)
		}
	}
	var b [8]byte
	for t.token == 0 {
		if _, err := rand.Read(b[:]); err != nil {
			m.Close()
			return fail(fmt.Errorf("owner token: %w", err))
		}
		t.token = binary.NativeEndian.Uint64(b[:])
	}
	leak.Track(m.FD())
	if opts.Pin {
		if err := pinNodeTable(m); err != nil {
			t.Close()
			return fail(err)
		}
	}
	interval := opts.HeartbeatInterval
	if interval == 0 {
		interval = DefaultNodeHeartbeatInterval
	}
	if interval > 0 {
		t.onError = opts.OnKeepaliveError
		t.stop, t.stopped = make(chan struct{}), make(chan struct{})
		go t.keepalive(interval)
	}
	return t, nil
}

// findNodeTable returns the node table with the lowest id, or nil.
func findNodeTable(tryPin bool) (*ebpf.Map, error) {
	spec := nodeSpec()
	if tryPin {
		if m, err := ebpf.LoadPinnedMap(NodePinPath, nil); err == nil {
			if spec.Compatible(m) == nil {
				return m, nil
			}
			m.Close()
		}
	}
	var best *ebpf.Map
	var id ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return best, nil
		}
		if err != nil {
			if best != nil {
				best.Close()
			}
			return nil, fmt.Errorf("walking BPF map ids (needs CAP_SYS_ADMIN): %w", err)
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue // freed meanwhile, or not ours to open
		}
		info, err := m.Info()
		if err != nil || info.Name != NodeTableName || spec.Compatible(m) != nil {
			m.Close()
			continue
		}
		if best == nil {
			best = m // ids only grow: the first found is the lowest
			continue
		}
		m.Close()
	}
}

func pinNodeTable(m *ebpf.Map) error {
	if err := ensureBPFFS(filepath.Dir(NodePinPath)); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(NodePinPath), 0o755); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if old, err := ebpf.LoadPinnedMap(NodePinPath, nil); err == nil {
		oi, err1 := old.Info()
		mi, err2 := m.Info()
		old.Close()
		if err1 == nil && err2 == nil {
			oid, _ := oi.ID()
			mid, _ := mi.ID()
			if oid == mid {
				return nil
			}
		}
		// A stale pin of a table nobody walks to any more.
		if err := os.Remove(NodePinPath); err != nil {
			return fmt.Errorf("pin: removing stale %s: %w", NodePinPath, err)
		}
	}
	if err := m.Pin(NodePinPath); err != nil {
		return fmt.Errorf("pin: %s: %w", NodePinPath, err)
	}
	return nil
}

// ID is the host-wide id of the table.
func (t *NodeTable) ID() uint32 { return t.id }

// CurrentNetnsInode returns the inode of the calling thread's network
// namespace, the NetnsInode of endpoints it registers.
func CurrentNetnsInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("stat of the network namespace: %w", err)
	}
	return st.Ino, nil
}

func (t *NodeTable) use(op string, fn func() error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return &Error{Op: op, Err: ErrClosed}
	}
	if err := fn(); err != nil {
		return &Error{Op: op, Err: err}
	}
	return nil
}

func validEndpoint(e *NodeEndpoint) error {
	switch {
	case e.Service == "" || len(e.Service) > NodeServiceMax:
		return fmt.Errorf("%w: service name %q: want 1..%d bytes", ErrInvalid, e.Service, NodeServiceMax)
	case len(e.Version) > NodeVersionMax:
		return fmt.Errorf("%w: version %q longer than %d bytes", ErrInvalid, e.Version, NodeVersionMax)
	case len(e.Zone) > NodeZoneMax:
		return fmt.Errorf("%w: zone %q longer than %d bytes", ErrInvalid, e.Zone, NodeZoneMax)
	case !e.Addr.IsValid() || e.Addr.Port() == 0 || e.Addr.Addr().Zone() != "":
		return fmt.Errorf("%w: endpoint address %v", ErrInvalid, e.Addr)
	case e.Health < NodeServing || e.Health > NodeNotServing:
		return fmt.Errorf("%w: health %v", ErrInvalid, e.Health)
	}
	return nil
}

func (t *NodeTable) value(e *NodeEndpoint, now uint64) nodeValue {
	return nodeValue{service: e.Service, version: e.Version, zone: e.Zone, weight: e.Weight, health: e.Health,
		pid: t.pid, ifindex: uint32(e.Ifindex), heartbeatNs: now, owner: t.token}
}

// Register adds e as an endpoint of this process, in
// the calling thread's network namespace, or replaces this process's entry
// for e.Addr. A live entry of another process for the same address and
// namespace is ErrAddrInUse; a stale one is taken over.
func (t *NodeTable) Register(e NodeEndpoint) error {
	return t.use("register node endpoint", func() error {
		if e.Health == 0 {
			e.Health = NodeServing
		}
		if err := validEndpoint(&e); err != nil {
			return err
		}
		ns, err := CurrentNetnsInode()
		if err != nil {
			return err
		}
		e.NetnsInode, e.PID = ns, t.pid
		key := makeNodeKey(e.Addr, ns)
		now, err := kernelNow()
		if err != nil {
			return err
		}
		var raw []byte
		if err := t.m.Lookup(key[:], &raw); err == nil {
			old := unmarshalNodeValue(raw)
			if old.owner != t.token && !staleNode(now, old.heartbeatNs) {
				return fmt.Errorf("%w (%w): %v is registered for %q by pid %d", ErrAddrInUse, unix.EADDRINUSE, e.Addr, old.service, old.pid)
			}
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return mapError(err)
		}
		v := t.value(&e, now)
		if err := t.m.Update(key[:], v.marshal(), ebpf.UpdateAny); err != nil {
			return mapError(err)
		}
		t.own[key] = e
		return nil
	})
}

// staleNode is the node table's staleness test.
func staleNode(now, heartbeat uint64) bool {
	age := int64(now - heartbeat)
	return age > NodeStaleAfter.Nanoseconds() || age < -NodeStaleAfter.Nanoseconds()
}

// Update changes this process's entry for e.Addr (registered from the
// calling thread's namespace): health, weight, version and so on.
// ErrNotFound when it has none.
func (t *NodeTable) Update(e NodeEndpoint) error {
	ns, err := CurrentNetnsInode()
	if err != nil {
		return &Error{Op: "update node endpoint", Err: err}
	}
	t.mu.Lock()
	_, ok := t.own[makeNodeKey(e.Addr, ns)]
	t.mu.Unlock()
	if !ok {
		return &Error{Op: "update node endpoint", Err: fmt.Errorf("%w: %v is not registered by this process", ErrNotFound, e.Addr)}
	}
	return t.Register(e)
}

// Withdraw removes this process's entry for addr (registered from the
// calling thread's namespace). ErrNotFound when it has none.
func (t *NodeTable) Withdraw(addr netip.AddrPort) error {
	return t.use("withdraw node endpoint", func() error {
		ns, err := CurrentNetnsInode()
		if err != nil {
			return err
		}
		key := makeNodeKey(addr, ns)
		if _, ok := t.own[key]; !ok {
			return fmt.Errorf("%w: %v is not registered by this process", ErrNotFound, addr)
		}
		delete(t.own, key)
		return t.deleteIfOwn(key)
	})
}

func (t *NodeTable) deleteIfOwn(key nodeKey) error {
	var raw []byte
	if err := t.m.Lookup(key[:], &raw); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return mapError(err)
	}
	if unmarshalNodeValue(raw).owner != t.token {
		return nil // taken over: no longer ours to remove
	}
	if err := t.m.Delete(key[:]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return mapError(err)
	}
	return nil
}

// List returns every entry of the table, this process's and others',
// sorted by service and address, with Stale set for entries whose server
// has not heartbeaten for NodeStaleAfter (clients should skip those).
func (t *NodeTable) List() ([]NodeEndpoint, error) {
	var out []NodeEndpoint
	err := t.use("list node table", func() error {
		now, err := kernelNow()
		if err != nil {
			return err
		}
		var key, raw []byte
		it := t.m.Iterate()
		for it.Next(&key, &raw) {
			if len(key) != nodeKeySize || len(raw) != nodeValueSize {
				continue
			}
			v := unmarshalNodeValue(raw)
			addr, ns := nodeKey(key).addr()
			out = append(out, NodeEndpoint{Service: v.service, Addr: addr, Version: v.version, Zone: v.zone,
				Weight: v.weight, Health: v.health, Ifindex: int(v.ifindex), NetnsInode: ns, PID: v.pid,
				HeartbeatAge: time.Duration(int64(now - v.heartbeatNs)), Stale: staleNode(now, v.heartbeatNs)})
		}
		return mapError(it.Err())
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Addr.Compare(out[j].Addr) < 0
	})
	return out, err
}

// Heartbeat stamps this process's entries. An entry another process took
// over is forgotten and reported with ErrTakenOver; one that a Sweep
// removed while this process was stale is written again.
func (t *NodeTable) Heartbeat() error {
	return t.use("node heartbeat", func() error {
		now, err := kernelNow()
		if err != nil {
			return err
		}
		var lost []error
		for key, e := range t.own {
			var raw []byte
			err := t.m.Lookup(key[:], &raw)
			switch {
			case err == nil && unmarshalNodeValue(raw).owner != t.token:
				delete(t.own, key)
				lost = append(lost, fmt.Errorf("%w: node endpoint %v of %q", ErrTakenOver, e.Addr, e.Service))
				continue
			case err != nil && !errors.Is(err, ebpf.ErrKeyNotExist):
				return mapError(err)
			}
			flag := ebpf.UpdateExist
			if err != nil {
				flag = ebpf.UpdateNoExist // swept meanwhile: put it back
			}
			v := t.value(&e, now)
			if err := t.m.Update(key[:], v.marshal(), flag); err != nil {
				if errors.Is(err, ebpf.ErrKeyExist) || errors.Is(err, ebpf.ErrKeyNotExist) {
					continue // raced with a takeover or a sweep: settled next beat
				}
				return mapError(err)
			}
		}
		return errors.Join(lost...)
	})
}

// Sweep deletes entries of other processes that are stale, and returns how
// many. A server that resumes after its entry was swept writes it again
// at its next heartbeat.
func (t *NodeTable) Sweep() (int, error) {
	n := 0
	err := t.use("sweep node table", func() error {
		now, err := kernelNow()
		if err != nil {
			return err
		}
		var key, raw []byte
		var doomed [][]byte
		it := t.m.Iterate()
		for it.Next(&key, &raw) {
			if len(raw) != nodeValueSize {
				continue
			}
			if v := unmarshalNodeValue(raw); v.owner != t.token && staleNode(now, v.heartbeatNs) {
				doomed = append(doomed, append([]byte(nil), key...))
			}
		}
		if err := it.Err(); err != nil {
			return mapError(err)
		}
		for _, k := range doomed {
			if err := t.m.Delete(k); err == nil {
				n++
			} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
				return mapError(err)
			}
		}
		return nil
	})
	return n, err
}

func (t *NodeTable) keepalive(interval time.Duration) {
	defer close(t.stopped)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		err := t.Heartbeat()
		if n%sweepEvery == 0 {
			_, serr := t.Sweep()
			err = errors.Join(err, serr)
		}
		if err != nil && t.onError != nil && !errors.Is(err, ErrClosed) {
			t.onError(err)
		}
	}
}

// Close withdraws this process's entries and releases the handle (the
// table itself lives on while another process holds it). Closing twice
// returns nil.
func (t *NodeTable) Close() error {
	if t.stop != nil {
		t.stopOnce.Do(func() {
			close(t.stop)
			<-t.stopped
		})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for key := range t.own {
		errs = append(errs, t.deleteIfOwn(key))
	}
	leak.Untrack(t.m.FD())
	errs = append(errs, t.m.Close())
	if err := errors.Join(errs...); err != nil {
		return &Error{Op: "close node table", Err: err}
	}
	return nil
}

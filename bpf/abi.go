package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// ABIVersion is the version of the steering program's maps and their
// meaning (ZH_ABI in steer.c). A server joins an attached program only when
// the program's meta map holds exactly this version and every map has the
// shape this package expects; any change a joining server could notice (a
// map added or resized, a key or value layout, a field's or counter's
// meaning) increments it. Servers of different versions therefore cannot
// share an interface: the second one fails with ErrIncompatible naming both
// versions, and the fix is to run one version of zerohop per interface
// (stop the old servers, or serve the new one on the io_uring backend until
// they are gone).
//
// Version 1 was the private program of one server (no meta map); version 2
// is the shared program with slots, heartbeats and per-slot counters;
// version 3 adds the service flag ServiceRequireSealed and its counter
// (UnsealedDropped).
const ABIVersion = 4

// The program's fixed dimensions (ZH_MAX_QUEUES and ZH_MAX_SLOTS in
// steer.c). The XSKMAP index of a socket is slot*MaxQueues + queue.
const (
	// MaxQueues bounds the receive queues a server can register sockets
	// on (queues 0..MaxQueues-1); packets on higher queues go to the
	// kernel and count as NoSocket.
	MaxQueues = 256
	// MaxSlots bounds the servers that can join one interface at once.
	MaxSlots = 64
)

// StaleAfter is how long after its last heartbeat a server's services stop
// being steered (the program then passes their packets to the kernel,
// counted as Stale). It is written into the meta map by whoever loads the
// program and is the same for every server of the interface.
const StaleAfter = time.Second

const (
	abiMagic = 0x5a484f50 // "ZHOP", ZH_MAGIC in steer.c
	progName = "zerohop_steer"
)

// ErrIncompatible: the interface holds a zerohop steering program of
// another ABI version, or one whose maps do not have the expected shape.
var ErrIncompatible = errors.New("incompatible zerohop XDP program")

// ErrForeign: the interface holds an XDP program that is not zerohop's.
// zerohop never replaces it.
var ErrForeign = errors.New("foreign XDP program attached")

// newSpec returns the program's collection spec with the meta map filled
// in; loadProgram freezes it after loading, so that neither the program
// (BPF_F_RDONLY_PROG) nor any process can change it afterwards.
func newSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded XDP object: %w", err)
	}
	meta := spec.Maps[steerMapMeta]
	meta.Contents = []ebpf.MapKV{{Key: uint32(0), Value: steerMeta{
		Magic: abiMagic, Abi: ABIVersion, MaxQueues: MaxQueues, MaxSlots: MaxSlots,
		StaleNs: uint64(StaleAfter.Nanoseconds()),
	}}}
	return spec, nil
}

// mapNames are the maps of the program, by the name the kernel knows them
// under (map names are kept whole: all are shorter than 16 bytes).
var mapNames = []string{
	steerMapXsks, steerMapServices, steerMapSlots, steerMapSlotCounters, steerMapMeta,
	steerMapAcl, steerMapAclHits, steerMapCounters, steerMapSettings,
}

// checkMeta verifies the contents of an attached program's meta map.
func checkMeta(m *ebpf.Map) error {
	var meta steerMeta
	if err := m.Lookup(uint32(0), &meta); err != nil {
		return fmt.Errorf("%w: reading its meta map: %w", ErrIncompatible, err)
	}
	switch {
	case meta.Magic != abiMagic:
		return fmt.Errorf("%w: its meta map has magic %#x, want %#x", ErrIncompatible, meta.Magic, abiMagic)
	case meta.Abi != ABIVersion:
		return fmt.Errorf("%w: it speaks ABI version %d, this zerohop speaks %d (run one zerohop version per interface)",
			ErrIncompatible, meta.Abi, ABIVersion)
	case meta.MaxQueues != MaxQueues || meta.MaxSlots != MaxSlots || meta.StaleNs != uint64(StaleAfter.Nanoseconds()):
		return fmt.Errorf("%w: its meta map says %d queues, %d slots, stale after %dns; want %d, %d, %d",
			ErrIncompatible, meta.MaxQueues, meta.MaxSlots, meta.StaleNs, MaxQueues, MaxSlots, StaleAfter.Nanoseconds())
	}
	return nil
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// XDP steering program of zerohop, one per interface, shared by every
// zerohop server on it. See doc.go for the contract; in short: Ethernet ->
// up to two VLAN tags -> IPv4 (any IHL) or IPv6 -> UDP, then ACL (drop),
// service match (redirect to the AF_XDP socket that the service's server
// registered for the receive queue, if that server is alive), and XDP_PASS
// for everything else so the kernel keeps working.
//
// ABI: every map below, its key and value layout, and the meaning of each
// field are version ZH_ABI. Servers of another ABI refuse to join (bpf/abi.go);
// change ZH_ABI with any change a joining server could notice.
//
// Regenerate the Go bindings and objects with `go generate ./bpf` after any
// change; bpf/check-generated verifies the committed objects match.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Version of everything a joining server relies on: the maps, their key
// and value layouts, the meaning of each field and counter. bpf/abi.go
// holds the same number; a server refuses to join a program of another.
#define ZH_ABI 4
#define ZH_MAGIC 0x5a484f50 // "ZHOP"

// An XSKMAP index is slot * ZH_MAX_QUEUES + rx queue.
#define ZH_MAX_QUEUES 256
#define ZH_MAX_SLOTS 64

// Indexes of the per-CPU counters. Every packet lands in exactly one of
// REDIRECTED, PASSED, ACL_DROPPED, LOSS_DROPPED and UNSEALED_DROPPED;
// MALFORMED, NO_SOCKET, STALE, FRAGMENT and OVERSIZE are subsets of PASSED.
enum counter {
	COUNTER_SEEN = 0,
	COUNTER_REDIRECTED,
	COUNTER_PASSED,
	COUNTER_ACL_DROPPED,
	COUNTER_MALFORMED,
	COUNTER_NO_SOCKET,
	COUNTER_LOSS_DROPPED,
	COUNTER_STALE,
	COUNTER_FRAGMENT,
	COUNTER_OVERSIZE,
	COUNTER_UNSEALED_DROPPED,
	COUNTER_MAX,
};

// Per-slot counters, for the server that owns the slot: what its services
// got and why some of it went to the kernel instead.
struct slot_counters {
	__u64 redirected;
	__u64 no_socket; // no socket of this slot on the packet's queue
	__u64 stale;     // the slot's heartbeat was older than meta.stale_ns
	__u64 oversize;  // longer than the service's max_len
};

enum acl_action {
	ACL_ALLOW = 1,
	ACL_DENY = 2,
};

// Service flag: the service is matched (counted, subject to the loss knob)
// but handed to the kernel instead of an AF_XDP socket.
#define SERVICE_FLAG_PASS 0x1
// Service flag: the server requires sealed frames (strict mode): a GWIR
// REQUEST without the SEALED flag is dropped here, before any socket,
// and counted as UNSEALED_DROPPED. PING and everything not GWIR v1 go on
// as usual.
#define SERVICE_FLAG_REQUIRE_SEALED 0x2

// The bytes of a GWIR header the program reads (docs/protocol.md).
#define GWIR_HEADER_LEN 24
#define GWIR_KIND_REQUEST 1
#define GWIR_FLAG_SEALED 0x04 // flag bit 2, in the low byte (offset 23)

// Key of the ACL trie. The prefix covers the destination port first (all
// 16 bits for a port rule, the port is 0 for an any-port rule) and then
// the source address: IPv6, or IPv4 mapped into ::ffff:0:0/96.
// prefixlen = 16 + 96 + v4 bits, or 16 + v6 bits.
struct acl_key {
	__u32 prefixlen;
	__u8 port[2]; // big endian
	__u8 addr[16];
	__u16 _pad;
};

// A rule's value. Its hit counter is not in here: the trie stores a value
// right after the key bytes (20 of them), so an 8-byte counter in it sits
// wherever the node's allocation puts it, and for some nodes it straddles
// two cache lines. An atomic add there is a split lock: the CPU locks the
// bus, and a hypervisor may throttle a guest that does that; we measured
// 28 ms per request through such a rule on a KVM guest, depending on where
// the server's nodes happened to be allocated. The counters live in
// acl_hits instead, per CPU and aligned.
struct acl_rule {
	__u32 action;    // enum acl_action
	__u32 prefixlen; // the rule's own key prefixlen: names its acl_hits entry
};

// Key of the services hash: destination port (host order) and destination
// address (v4-mapped for IPv4; all zero matches any address).
struct service_key {
	__u16 port;
	__u16 _pad;
	__u8 addr[16];
};

// A service belongs to the server in slot; it is live only while that
// slot's owner token equals owner and its heartbeat is fresh.
struct service {
	__u32 slot;
	__u32 flags;
	__u32 id;      // chosen by the server, opaque to the program
	__u32 max_len; // frames longer than this go to the kernel; 0: no limit
	__u64 owner;   // the token of the slot's owner that registered it
};

// One per server: written by its owner only (claimed under the registry
// lock, see bpf/registry.go).
struct slot {
	__u64 heartbeat_ns; // bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC_COARSE
	__u64 owner;        // random token of the current owner; 0: free
	__u32 pid;          // the owner's pid, in its own pid namespace
	__u32 _pad;
	// Bit q set: the owner has a socket on queue q (for other servers,
	// which cannot bind a queue an AF_XDP socket of another process
	// holds; the program does not read it).
	__u64 queues[ZH_MAX_QUEUES / 64];
};

// Written once by the server that loads the program, then frozen (the
// program may only read it): how a joining server recognises it.
struct meta {
	__u32 magic; // ZH_MAGIC
	__u32 abi;   // ZH_ABI
	__u32 max_queues;
	__u32 max_slots;
	__u64 stale_ns; // a slot whose heartbeat is older is ignored
};

// Test knob: when loss_every_n > 0, every loss_every_n-th packet that
// matches a service is dropped. seq counts matches since the knob was set.
struct settings {
	__u32 loss_every_n;
	__u32 _pad;
	__u64 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, ZH_MAX_SLOTS * ZH_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct service_key);
	__type(value, struct service);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZH_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZH_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct slot_counters);
} slot_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__type(key, __u32);
	__type(value, struct meta);
} meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct acl_key);
	__type(value, struct acl_rule);
} acl SEC(".maps");

// Packets that matched each rule, per CPU: the key is the rule's acl key
// with the address bits past its prefix cleared (as Go writes it). Go
// creates the entry with the rule and deletes it with the rule.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct acl_key);
	__type(value, __u64);
} acl_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

#define ETH_P_8021Q_BE bpf_htons(ETH_P_8021Q)
#define ETH_P_8021AD_BE bpf_htons(ETH_P_8021AD)
#define IP_FRAG_MASK_BE bpf_htons(0x3fff) // MF flag and fragment offset

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; // offset in 8-byte units << 3, MF in bit 0
	__be32 identification;
};

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);
	if (value)
		*value += 1; // per-CPU slot: no other writer
}

static __always_inline int pass(void)
{
	count(COUNTER_PASSED);
	return XDP_PASS;
}

// pass_fragment hands an IP fragment of a UDP datagram to the kernel,
// which reassembles it (and a server's kernel socket may answer it).
static __always_inline int pass_fragment(void)
{
	count(COUNTER_FRAGMENT);
	return pass();
}

static __always_inline int malformed(void)
{
	count(COUNTER_MALFORMED);
	return pass();
}

// count_hit adds one to the hit counter of the rule that matched key (a
// full-length lookup key): the key cut to the rule's prefix names it. The
// port bytes need no cut: a port rule's prefix covers all 16 bits and an
// any-port rule only matches the lookup with port 0.
static __always_inline void count_hit(const struct acl_key *key, const struct acl_rule *rule)
{
	struct acl_key hit = *key;
	__u32 bits = rule->prefixlen > 16 ? rule->prefixlen - 16 : 0;

	hit.prefixlen = rule->prefixlen;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		hit.addr[i] &= (__u8)(0xff00 >> bits);
		bits = 0;
	}
	__u64 *hits = bpf_map_lookup_elem(&acl_hits, &hit);
	if (hits)
		*hits += 1; // per-CPU value: no other writer
}

// acl_denies looks the source up for the port, then for any port; the
// first (longest-prefix) match decides. No match allows.
static __always_inline int acl_denies(struct acl_key *key, __u16 port)
{
	struct acl_rule *rule;

	if (port != 0) {
		key->prefixlen = 16 + 128;
		key->port[0] = port >> 8;
		key->port[1] = port & 0xff;
		rule = bpf_map_lookup_elem(&acl, key);
		if (rule) {
			count_hit(key, rule);
			return rule->action == ACL_DENY;
		}
	}
	key->prefixlen = 16 + 128;
	key->port[0] = 0;
	key->port[1] = 0;
	rule = bpf_map_lookup_elem(&acl, key);
	if (rule) {
		count_hit(key, rule);
		return rule->action == ACL_DENY;
	}
	return 0;
}

SEC("xdp")
int zerohop_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct acl_key acl_key = {};
	struct service_key svc_key = {};
	struct udphdr *udp;
	__be16 proto;
	void *l3;
	int fragment = 0;

	count(COUNTER_SEEN);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return malformed();
	proto = eth->h_proto;
	l3 = eth + 1;

	// Up to two VLAN tags (802.1ad outer, 802.1Q inner), unrolled.
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q_BE && proto != ETH_P_8021AD_BE)
			break;
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > data_end)
			return malformed();
		proto = vlan->proto;
		l3 = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end)
			return malformed();
		__u32 header_len = ip->ihl * 4;
		if (ip->version != 4 || header_len < sizeof(*ip))
			return malformed();
		if (l3 + header_len > data_end)
			return malformed();
		if (ip->protocol != IPPROTO_UDP)
			return pass();
		acl_key.addr[10] = 0xff;
		acl_key.addr[11] = 0xff;
		__builtin_memcpy(&acl_key.addr[12], &ip->saddr, 4);
		svc_key.addr[10] = 0xff;
		svc_key.addr[11] = 0xff;
		__builtin_memcpy(&svc_key.addr[12], &ip->daddr, 4);
		if (ip->frag_off & IP_FRAG_MASK_BE) {
			fragment = 1;
			// A non-first fragment carries no UDP header: only the
			// any-port ACL rules apply to it.
			if (ip->frag_off & bpf_htons(0x1fff)) {
				if (acl_denies(&acl_key, 0))
					goto deny;
				return pass_fragment();
			}
		}
		udp = l3 + header_len;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end)
			return malformed();
		if (ip6->version != 6)
			return malformed();
		__builtin_memcpy(acl_key.addr, &ip6->saddr, 16);
		__builtin_memcpy(svc_key.addr, &ip6->daddr, 16);
		// Walk up to four extension headers so that none of them (a
		// fragment header above all) lets a packet skip the ACL.
		__u8 next = ip6->nexthdr;
		void *cursor = ip6 + 1;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
				struct ipv6_opt_hdr *opt = cursor;
				if ((void *)(opt + 1) > data_end)
					return malformed();
				next = opt->nexthdr;
				cursor += (opt->hdrlen + 1) * 8;
			} else if (next == IPPROTO_FRAGMENT) {
				struct ipv6_frag_hdr *frag = cursor;
				if ((void *)(frag + 1) > data_end)
					return malformed();
				fragment = 1;
				if (frag->frag_off & bpf_htons(0xfff8)) {
					if (acl_denies(&acl_key, 0))
						goto deny;
					// Every fragment names the protocol of the
					// fragmented part in its header.
					if (frag->nexthdr == IPPROTO_UDP)
						return pass_fragment();
					return pass();
				}
				next = frag->nexthdr;
				cursor = frag + 1;
			}
		}
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
		    next == IPPROTO_FRAGMENT) {
			// Deeper than we walk: only the any-port rules apply.
			if (acl_denies(&acl_key, 0))
				goto deny;
			return pass();
		}
		if (next != IPPROTO_UDP)
			return pass();
		udp = cursor;
	} else {
		return pass();
	}

	if ((void *)(udp + 1) > data_end)
		return malformed();
	__u16 dport = bpf_ntohs(udp->dest);

	if (acl_denies(&acl_key, dport))
		goto deny;
	if (fragment)
		return pass_fragment();

	svc_key.port = dport;
	struct service *svc = bpf_map_lookup_elem(&services, &svc_key);
	if (!svc) {
		__builtin_memset(svc_key.addr, 0, sizeof(svc_key.addr));
		svc = bpf_map_lookup_elem(&services, &svc_key);
		if (!svc)
			return pass();
	}

	// A service whose server is gone or hung (no heartbeat for stale_ns)
	// goes to the kernel, where that server's kernel sockets (or an
	// ICMP port unreachable) answer.
	__u32 slot_index = svc->slot;
	__u32 zero = 0;
	struct meta *m = bpf_map_lookup_elem(&meta, &zero);
	struct slot *owner = bpf_map_lookup_elem(&slots, &slot_index);
	struct slot_counters *sc = bpf_map_lookup_elem(&slot_counters, &slot_index);
	if (!m || !owner || !sc) // slot out of range: never written so by Go
		return malformed();
	__s64 age = (__s64)(bpf_ktime_get_coarse_ns() - owner->heartbeat_ns);
	if (owner->owner != svc->owner || owner->owner == 0 || age > (__s64)m->stale_ns ||
	    age < -(__s64)m->stale_ns) {
		sc->stale += 1;
		count(COUNTER_STALE);
		return pass();
	}

	struct settings *set = bpf_map_lookup_elem(&settings, &zero);
	if (set && set->loss_every_n) {
		__u64 seq = __sync_fetch_and_add(&set->seq, 1) + 1;
		if (seq % set->loss_every_n == 0) {
			count(COUNTER_LOSS_DROPPED);
			return XDP_DROP;
		}
	}

	if (svc->flags & SERVICE_FLAG_REQUIRE_SEALED) {
		__u8 *gwir = (void *)(udp + 1);
		if ((void *)(gwir + GWIR_HEADER_LEN) <= data_end && gwir[0] == 'G' && gwir[1] == 'W' && gwir[2] == 'I' &&
		    gwir[3] == 'R' && gwir[4] == 1 && gwir[7] == GWIR_KIND_REQUEST && !(gwir[23] & GWIR_FLAG_SEALED)) {
			count(COUNTER_UNSEALED_DROPPED);
			return XDP_DROP;
		}
	}

	if (svc->flags & SERVICE_FLAG_PASS)
		return pass();

	if (svc->max_len && data_end - data > svc->max_len) {
		sc->oversize += 1;
		count(COUNTER_OVERSIZE);
		return pass();
	}

	// Falls back to XDP_PASS when the slot has no socket on this queue
	// (another server holds the queue, or none does).
	__u32 queue = ctx->rx_queue_index;
	if (queue < ZH_MAX_QUEUES) {
		int action = bpf_redirect_map(&xsks, slot_index * ZH_MAX_QUEUES + queue, XDP_PASS);
		if (action == XDP_REDIRECT) {
			sc->redirected += 1;
			count(COUNTER_REDIRECTED);
			return action;
		}
	}
	sc->no_socket += 1;
	count(COUNTER_NO_SOCKET);
	return pass();

deny:
	count(COUNTER_ACL_DROPPED);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

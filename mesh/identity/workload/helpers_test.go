package workload_test

import "net/netip"

func netipLoopback() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:0") }

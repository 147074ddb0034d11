// Package xdp links the AF_XDP backend into a program. Import it for its
// side effect in a program that serves:
//
//	import _ "github.com/zerohop/zerohop/runtime/xdp"
//
// runtime.Listen then serves on AF_XDP sockets where the interface, the
// kernel and the process's privileges allow it (BackendAuto), or when
// asked (WithBackend(BackendXSK)). Without the import it serves on
// io_uring kernel sockets and says so in BackendReason; the point of the
// split is that a program that only calls other services (or serves on
// kernel sockets) links neither the AF_XDP path nor cilium/ebpf and the
// BPF program objects.
package xdp

import (
	"github.com/zerohop/zerohop/runtime/internal/xskhook"
	"github.com/zerohop/zerohop/runtime/internal/xskpath"
)

func init() { xskhook.Open = xskpath.Open }

package runtime

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// Methods of the test server.
const (
	methodEcho    = "test.Echo/Echo"   // OK, payload echoed
	methodFail    = "test.Echo/Fail"   // status APP(17), message "boom: <payload>"
	methodDeny    = "test.Echo/Deny"   // status DENIED, no payload at all
	methodSilent  = "test.Echo/Silent" // never answered
	methodBig     = "test.Echo/Big"    // OK, 5,000 bytes of payload
	statusTestApp = proto.StatusApplication + 1
)

// gwirServer is a small GWIR server on a plain net.UDPConn: the kernel's
// own UDP stack and the proto package, nothing of the client's.
type gwirServer struct {
	conn *net.UDPConn
	addr netip.AddrPort

	dropFirst  int // copies of each request id dropped before answering
	duplicates int // extra copies of each reply
	untracked  bool
	v1         bool // answer BAD_FRAME to an extension block, as a pre-EXT server does
	draining   atomic.Bool
	extSeen    atomic.Int64 // requests that carried an extension block

	mu   sync.Mutex
	seen map[uint64]int // copies received per request id

	done chan struct{}
}

type serverConfig struct {
	dropFirst, duplicates int
	untracked             bool // benchmarks: do not count copies per id
	v1                    bool // reject the extension block as GWIR v1 does (reserved flag)
}

// startGWIRServer serves on 127.0.0.1 until the test ends.
func startGWIRServer(t testing.TB, cfg serverConfig) *gwirServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return serveGWIR(t, conn, cfg)
}

// serveGWIR serves on conn (opened wherever the caller wanted, e.g. in a
// namespace) until the test ends.
func serveGWIR(t testing.TB, conn *net.UDPConn, cfg serverConfig) *gwirServer {
	t.Helper()
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	s := &gwirServer{
		conn:       conn,
		addr:       conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		dropFirst:  cfg.dropFirst,
		duplicates: cfg.duplicates,
		untracked:  cfg.untracked,
		v1:         cfg.v1,
		seen:       map[uint64]int{},
		done:       make(chan struct{}),
	}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

func (s *gwirServer) copies(id uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

func (s *gwirServer) totalCopies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.seen {
		n += c
	}
	return n
}

func (s *gwirServer) serve() {
	defer close(s.done)
	in := make([]byte, 65536)
	out := make([]byte, 65536)
	big := make([]byte, 5000)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(in)
		if err != nil {
			return
		}
		f, err := proto.Parse(in[:n])
		if err != nil {
			if errors.Is(err, proto.ErrBadFrame) {
				if r, err := proto.EncodeBadFrame(out, in[:n], err); err == nil {
					s.conn.WriteToUDPAddrPort(r, from)
				}
			}
			continue
		}
		id := f.RequestID()
		if f.HasExt() {
			s.extSeen.Add(1)
			if s.v1 {
				// What a server built before the extension block answers:
				// flag bit 1 is reserved, so the frame is BAD_FRAME.
				if r, err := proto.EncodeError(out, id, f.MethodID(), proto.StatusBadFrame, "reserved flags set"); err == nil {
					s.conn.WriteToUDPAddrPort(r, from)
				}
				continue
			}
		}
		if !s.untracked {
			s.mu.Lock()
			s.seen[id]++
			copies := s.seen[id]
			s.mu.Unlock()
			if copies <= s.dropFirst {
				continue
			}
		}
		var reply proto.Frame
		switch f.Kind() {
		case proto.KindPing:
			status := proto.PongServing
			if s.draining.Load() {
				status = proto.PongDraining
			}
			reply, err = proto.EncodePong(out, id, status)
		case proto.KindRequest:
			switch f.MethodID() {
			case proto.MethodID(methodEcho):
				reply, err = proto.EncodeResponse(out, id, f.MethodID(), proto.StatusOK, f.Payload())
			case proto.MethodID(methodFail):
				reply, err = proto.EncodeError(out, id, f.MethodID(), statusTestApp, "boom: "+string(f.Payload()))
			case proto.MethodID(methodDeny):
				reply, err = proto.EncodeResponse(out, id, f.MethodID(), proto.StatusDenied, nil)
			case proto.MethodID(methodBig):
				reply, err = proto.EncodeResponse(out, id, f.MethodID(), proto.StatusOK, big)
			case proto.MethodID(methodSilent):
				continue
			default:
				reply, err = proto.EncodeError(out, id, f.MethodID(), proto.StatusUnknownMethod, "no such method")
			}
		default:
			continue
		}
		if err != nil {
			panic(err) // the test server's own bug
		}
		for range 1 + s.duplicates {
			s.conn.WriteToUDPAddrPort(reply, from)
		}
	}
}

// openFds lists this process's descriptors and what they point at.
func openFds(t testing.TB) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			fds[fd] = target
		}
	}
	return fds
}

// newKernelFds returns the sockets, rings and eventfds open now that were
// not open in before.
func newKernelFds(t testing.TB, before map[int]string) []string {
	var leaked []string
	for fd, target := range openFds(t) {
		if before[fd] == target {
			continue
		}
		if strings.HasPrefix(target, "socket:") || strings.Contains(target, "io_uring") ||
			strings.Contains(target, "eventfd") {
			leaked = append(leaked, strconv.Itoa(fd)+" → "+target)
		}
	}
	return leaked
}

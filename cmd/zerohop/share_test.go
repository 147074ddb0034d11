package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

// syncBuffer is a bytes.Buffer a subprocess writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveProc is one `zerohop serve` process (this test binary acting as
// zerohop) in a namespace.
type serveProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
}

// startServe starts `zerohop serve args...` inside h: through its own
// `ip netns exec` (a mount namespace and /sys of its own), or with
// viaNsenter through nsenter --net, which keeps this process's mount
// namespace (and a /sys showing another network namespace). It returns
// once the server logs that it serves.
func startServe(t *testing.T, h *topo.Host, name string, viaNsenter bool, args ...string) *serveProc {
	t.Helper()
	full := append([]string{"serve"}, args...)
	var cmd *exec.Cmd
	if viaNsenter {
		cmd = exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + h.Name, "--", os.Args[0]}, full...)...)
	} else {
		cmd = h.Command(t.Context(), os.Args[0], full...)
	}
	p := &serveProc{t: t, name: name, cmd: cmd, logs: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	for i := 0; !strings.Contains(p.logs.String(), "zerohop serving"); i++ {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before serving:\n%s", name, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if i == 1500 {
			t.Fatalf("%s not serving after 30 s:\n%s", name, p.logs.String())
		}
	}
	return p
}

// kill sends SIGKILL (no Shutdown, no deferred cleanup) and waits for the
// process to be gone.
func (p *serveProc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// servingLine is the server's "zerohop serving" log line.
func (p *serveProc) servingLine() string {
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(line, "zerohop serving") {
			return line
		}
	}
	return ""
}

// portLoad keeps kernel UDP sockets in a namespace calling one port, each
// call retransmitted (every 200 ms, up to attempts times) until answered.
type portLoad struct {
	answered, failed, retrans atomic.Int64
	firstErr                  atomic.Pointer[error]
}

type load struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	ports map[uint16]*portLoad
}

func startLoad(t *testing.T, h *topo.Host, addr netip.Addr, ports []uint16, socketsPerPort, attempts int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{}), ports: map[uint16]*portLoad{}}
	for _, port := range ports {
		pl := &portLoad{}
		l.ports[port] = pl
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port))
		for i := 0; i < socketsPerPort; i++ {
			l.wg.Add(1)
			h.Go(func() error {
				defer l.wg.Done()
				// Pinned so XPS spreads the sockets over every TX queue;
				// the CPU set is put back before the thread is reused.
				var old, set unix.CPUSet
				unix.SchedGetaffinity(0, &old)
				set.Set(i % runtime.NumCPU())
				unix.SchedSetaffinity(0, &set)
				defer unix.SchedSetaffinity(0, &old)
				conn, err := net.DialUDP("udp", nil, to)
				if err != nil {
					pl.fail(err)
					return nil
				}
				defer conn.Close()
				buf := make([]byte, 2048)
				for n := uint64(0); ; n++ {
					select {
					case <-l.stop:
						return nil
					default:
					}
					id := uint64(i)<<32 | n
					payload := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), id)
					retrans, err := callEcho(conn, buf, id, payload, attempts)
					pl.retrans.Add(int64(retrans))
					if err != nil {
						pl.fail(fmt.Errorf("port %d socket %d: %w", port, i, err))
						continue
					}
					pl.answered.Add(1)
				}
			})
		}
	}
	t.Cleanup(l.halt)
	return l
}

func (pl *portLoad) fail(err error) {
	pl.failed.Add(1)
	pl.firstErr.CompareAndSwap(nil, &err)
}

func (pl *portLoad) String() string {
	s := fmt.Sprintf("%d answered, %d failed, %d retransmissions", pl.answered.Load(), pl.failed.Load(), pl.retrans.Load())
	if e := pl.firstErr.Load(); e != nil {
		s += fmt.Sprintf(" (first failure: %v)", *e)
	}
	return s
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitAnswered waits (bounded) until port has answered n more calls.
func (l *load) waitAnswered(t *testing.T, port uint16, more int64) {
	t.Helper()
	pl := l.ports[port]
	want := pl.answered.Load() + more
	for i := 0; pl.answered.Load() < want; i++ {
		if i == 3000 {
			t.Fatalf("port %d: no progress to %d answered calls in 30 s: %s", port, want, pl)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// callEcho sends an echo request until its reply comes (attempts × 200 ms).
func callEcho(conn *net.UDPConn, buf []byte, id uint64, payload []byte, attempts int) (int, error) {
	req, _ := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), id, proto.MethodID(echo.EchoMethod), 0, payload)
	for a := 0; a < attempts; a++ {
		conn.Write(req)
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				time.Sleep(time.Until(deadline)) // ECONNREFUSED: nobody there yet
				break
			}
			if f, err := proto.Parse(buf[:n]); err == nil && f.RequestID() == id {
				if !bytes.Equal(f.Payload(), payload) {
					return a, fmt.Errorf("call %#x: payload % x", id, f.Payload())
				}
				return a, nil
			}
		}
	}
	return attempts, fmt.Errorf("call %#x: no reply after %d attempts", id, attempts)
}

// Two and three `zerohop serve` processes on one interface, different
// ports, each on AF_XDP on its own queues (one started through nsenter,
// in this process's mount namespace, the others each through an `ip netns
// exec` of their own). Under load from a kernel client spread over every
// queue, one is killed with SIGKILL: the others lose no call. It is
// restarted and serves again at once. When all are killed, the interface
// is left without an XDP program.
func TestServeServersShareInterface(t *testing.T) {
	for _, tc := range []struct {
		name   string
		queues []string
	}{{"2 servers", []string{"0,1", "2,3"}}, {"3 servers", []string{"0,1", "2", "3"}}} {
		t.Run(tc.name, func(t *testing.T) {
			link := topo.Pair(t, topo.Config{Queues: 4, XPS: true})
			var ports []uint16
			var procs []*serveProc
			args := func(i int) []string {
				return []string{"--addr", netip.AddrPortFrom(link.A.Addr4, ports[i]).String(), "--iface", link.A.Iface,
					"--queues", tc.queues[i], "--backend", "xsk"}
			}
			for i := range tc.queues {
				ports = append(ports, uint16(7300+i))
				procs = append(procs, startServe(t, link.A.Host, fmt.Sprintf("server %d", i), i == 0, args(i)...))
			}
			for i, p := range procs {
				line := p.servingLine()
				for _, q := range strings.Split(tc.queues[i], ",") {
					if !strings.Contains(line, "backend=xsk") || !strings.Contains(line, "queue"+q+"(") {
						t.Fatalf("server %d does not serve queue %s on AF_XDP: %s", i, q, line)
					}
				}
				t.Logf("server %d: %s", i, line)
			}
			if err := link.A.Host.Do(func() error {
				a, err := bpf.Inspect(link.A.Iface)
				if err != nil {
					return err
				}
				if !a.Zerohop || len(a.Slots) != len(procs) {
					return fmt.Errorf("program %d (%s), %d slots: want zerohop's with %d servers", a.ProgramID, a.Name, len(a.Slots), len(procs))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}

			victim := 1
			l := startLoad(t, link.B.Host, link.A.Addr4, ports, 8, 50)
			for _, port := range ports {
				l.waitAnswered(t, port, 300)
			}
			procs[victim].kill()
			t.Logf("killed server %d (pid %d) with SIGKILL", victim, procs[victim].cmd.Process.Pid)
			for i, port := range ports {
				if i != victim {
					l.waitAnswered(t, port, 1000)
				}
			}
			procs[victim] = startServe(t, link.A.Host, fmt.Sprintf("server %d again", victim), false, args(victim)...)
			if line := procs[victim].servingLine(); !strings.Contains(line, "backend=xsk") {
				t.Fatalf("restarted server not on AF_XDP: %s", line)
			}
			// Its load's calls (retransmitted meanwhile) are answered again.
			l.waitAnswered(t, ports[victim], 300)
			for i, port := range ports {
				if i != victim {
					l.waitAnswered(t, port, 300)
				}
			}
			l.halt()
			for i, port := range ports {
				pl := l.ports[port]
				t.Logf("server %d (port %d): %s", i, port, pl)
				if i != victim && pl.failed.Load() != 0 {
					t.Errorf("server %d lost calls while server %d was killed and restarted: %s", i, victim, pl)
				}
			}

			for _, p := range procs {
				p.kill()
			}
			start := time.Now()
			for i := 0; ; i++ {
				var a bpf.Attachment
				if err := link.A.Host.Do(func() (err error) { a, err = bpf.Inspect(link.A.Iface); return err }); err != nil {
					t.Fatal(err)
				}
				if a.ProgramID == 0 {
					t.Logf("no XDP program on %s %v after the last server was killed", link.A.Iface, time.Since(start).Round(time.Millisecond))
					break
				}
				if i == 500 {
					t.Fatalf("XDP program %d (%s) still on %s 5 s after every server was killed", a.ProgramID, a.Name, link.A.Iface)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

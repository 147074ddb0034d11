package bpf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/xsk"
)

// runServerHelper is a minimal zerohop server in a process of its own: it
// joins the interface's program, binds a raw AF_XDP socket to one queue,
// registers it and a service on one port, prints
//
//	ready pid=<pid> slot=<n> loaded=<bool> prog=<id> mode=<mode> timens=<offset>
//
// and then a line "got <dport> <payload>" for every UDP datagram its socket
// receives, "keepalive-error <err>" for errors of its keepalive, until its
// stdin closes. args (URL query syntax): iface, port, queue, and netns, the
// namespace to enter when not started inside it.
func runServerHelper(args string) int {
	q, err := url.ParseQuery(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve helper:", err)
		return 1
	}
	run := func() error { return serveHelper(q) }
	if ns := q.Get("netns"); ns != "" {
		err = topo.Enter(ns, run)
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve helper:", err)
		return 1
	}
	return 0
}

var stdoutMu sync.Mutex

func say(format string, args ...any) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func serveHelper(q url.Values) error {
	iface := q.Get("iface")
	port, _ := strconv.Atoi(q.Get("port"))
	queue, _ := strconv.Atoi(q.Get("queue"))
	p, err := Join(iface, Options{OnKeepaliveError: func(err error) { say("keepalive-error %v", err) }})
	if err != nil {
		return err
	}
	defer p.Close()
	ifindex := p.ifindex
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: 256})
	if err != nil {
		return err
	}
	defer umem.Close()
	sock, err := umem.Open(ifindex, queue, xsk.SocketConfig{CopyOnly: true, RXSize: 128, FillSize: 128, TXSize: 64, CompletionSize: 64})
	if err != nil {
		return err
	}
	sock.Refill(sock.Free())
	if err := p.SetSocket(queue, sock.FD()); err != nil {
		return err
	}
	if err := p.AddService(Service{Port: uint16(port), ID: uint32(port)}); err != nil {
		return err
	}
	offset, err := readTimensOffset("/proc/self/timens_offsets")
	if err != nil {
		return err
	}
	say("ready pid=%d slot=%d loaded=%v prog=%d mode=%v timens=%v", os.Getpid(), p.Slot(), p.Loaded(), p.ID(), p.Mode(), offset)

	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	descs := make([]xsk.Desc, 64)
	for {
		select {
		case <-done:
			return nil
		default:
		}
		fds := []unix.PollFd{{Fd: int32(sock.FD()), Events: unix.POLLIN}}
		unix.Poll(fds, 50)
		n := sock.Receive(descs)
		for _, d := range descs[:n] {
			pkt := gopacket.NewPacket(sock.Packet(d), layers.LayerTypeEthernet, gopacket.Default)
			if udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
				say("got %d %s", udp.DstPort, udp.Payload)
			}
			sock.Release(d.Addr)
		}
		sock.Refill(sock.Free())
	}
}

// server is a runServerHelper child as the test sees it.
type server struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	pid   int
	slot  int
	prog  uint32
	mode  string
	// loaded: it attached the program (rather than joined it).
	loaded bool
	// timens is the CLOCK_MONOTONIC offset of its time namespace.
	timens string
	dead   bool
}

// How a server process is started.
const (
	viaNetnsExec = "ip netns exec" // own mount namespace and /sys
	viaSetns     = "setns"         // the test's mount namespace; enters the netns itself
	viaTimens    = "unshare -T"    // ip netns exec inside a time namespace with CLOCK_MONOTONIC + 1 day
)

func startServer(t *testing.T, ep topo.Endpoint, how string, port uint16, queue int) *server {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := url.Values{"iface": {ep.Iface}, "port": {fmt.Sprint(port)}, "queue": {fmt.Sprint(queue)}}
	var cmd *exec.Cmd
	switch how {
	case viaNetnsExec:
		cmd = ep.Host.Command(context.Background(), self, "-test.run=^$")
	case viaSetns:
		args.Set("netns", ep.Host.Name)
		cmd = exec.Command(self, "-test.run=^$")
	case viaTimens:
		cmd = exec.Command("unshare", "--time", "--monotonic", "86400", "--fork",
			"ip", "netns", "exec", ep.Host.Name, self, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), helperEnv+"=serve:"+args.Encode())
	cmd.Stderr = os.Stderr
	s := &server{t: t, name: fmt.Sprintf("server on port %d (%s)", port, how), cmd: cmd, lines: make(chan string, 1024)}
	s.stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.name, err)
	}
	t.Cleanup(s.kill)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	line := s.expect("ready ", waitBound)
	var loaded string
	if _, err := fmt.Sscanf(line, "ready pid=%d slot=%d loaded=%s prog=%d mode=%s timens=%s", &s.pid, &s.slot, &loaded, &s.prog, &s.mode, &s.timens); err != nil {
		t.Fatalf("%s said %q: %v", s.name, line, err)
	}
	s.loaded = loaded == "true"
	return s
}

// expect returns the next line starting with prefix, skipping others, and
// fails the test when none comes within bound (a guard against hangs).
func (s *server) expect(prefix string, bound time.Duration) string {
	s.t.Helper()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("%s exited while the test waited for %q", s.name, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timer.C:
			s.t.Fatalf("%s: no %q within %v", s.name, prefix, bound)
		}
	}
}

// signal sends sig to the server process itself (not to a wrapper such as
// unshare).
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := syscall.Kill(s.pid, sig); err != nil {
		s.t.Fatalf("kill -%d %s: %v", sig, s.name, err)
	}
}

// kill9 kills the server with SIGKILL and reaps it.
func (s *server) kill9() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.dead = true
}

func (s *server) kill() {
	if !s.dead {
		syscall.Kill(s.pid, syscall.SIGKILL)
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.dead = true
	}
}

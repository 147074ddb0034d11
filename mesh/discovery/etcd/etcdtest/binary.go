package etcdtest

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

// BinaryName is the program StartBinary runs, as Debian's etcd-server
// package installs it.
const BinaryName = "etcd"

// BinaryConfig says where StartBinary runs etcd; the zero value runs it
// on 127.0.0.1 in the test's own network namespace.
type BinaryConfig struct {
	// Host is the address etcd listens on (client and peer), default
	// 127.0.0.1. In a namespace it is an address of that namespace.
	Host string
	// Prefix is put before the etcd command, such as
	// {"ip", "netns", "exec", NAME} to run etcd in a namespace.
	Prefix []string
	// Enter, when etcd runs in another network namespace, runs fn inside
	// it (topo.Host.Do does): the ports are picked and the readiness
	// check connects from there.
	Enter func(fn func() error) error
}

// Process is an etcd binary the test started.
type Process struct {
	// Endpoint is the client URL.
	Endpoint string
	// Dir is the data directory.
	Dir string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process was waited for
	waitErr error         // set before exited is closed
	out     *syncBuffer
}

// LookBinary returns the etcd binary's path, or why there is none.
func LookBinary() (string, error) {
	path, err := exec.LookPath(BinaryName)
	if err != nil {
		return "", fmt.Errorf("%s not in PATH (Debian: apt-get install etcd-server; scripts/test installs it): %w", BinaryName, err)
	}
	return path, nil
}

// RequireBinary skips the test when etcd is not installed, and fails it
// instead when topo.RequireKernelTestsEnv is 1 (scripts/test, CI), where
// scripts/test installed it.
func RequireBinary(t testing.TB) string {
	t.Helper()
	path, err := LookBinary()
	if err != nil {
		topo.SkipMissing(t, "etcdtest: %v", err)
	}
	return path
}

// StartBinary starts etcd as a separate process, waits until it answers,
// and stops it in t.Cleanup (SIGTERM, then SIGKILL after 5 s), also when
// the test fails; on failure its output is logged.
func StartBinary(t testing.TB, cfg BinaryConfig) *Process {
	t.Helper()
	path := RequireBinary(t)
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	enter := cfg.Enter
	if enter == nil {
		enter = func(fn func() error) error { return fn() }
	}
	var ports [2]int
	if err := enter(func() error {
		for i := range ports {
			var err error
			if ports[i], err = freePort(host); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	client, peer := hostURL(host, ports[0]), hostURL(host, ports[1])
	p := &Process{Endpoint: client.String(), Dir: t.TempDir(), exited: make(chan struct{}), out: new(syncBuffer)}
	args := append(append([]string(nil), cfg.Prefix...), path,
		"--name", "etcdtest",
		"--data-dir", p.Dir,
		"--listen-client-urls", client.String(), "--advertise-client-urls", client.String(),
		"--listen-peer-urls", peer.String(), "--initial-advertise-peer-urls", peer.String(),
		"--initial-cluster", "etcdtest="+peer.String(),
		"--log-level", "warn")
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Its own process group, so that a prefix command's child is stopped
	// with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("etcdtest: start %v: %v", args, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("etcdtest: stop etcd (pid %d): %v", p.cmd.Process.Pid, err)
		}
		if t.Failed() {
			t.Logf("etcd output:\n%s", p.out.String())
		}
	})
	if err := waitReady(p.Endpoint, p.exited, &p.waitErr, cfg.Enter); err != nil {
		t.Fatalf("etcdtest: %v\netcd output:\n%s", err, p.out.String())
	}
	return p
}

// stop ends the process group and waits for the process.
func (p *Process) stop() error {
	select {
	case <-p.exited:
		return nil // gone already (why is in its output)
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("still running 5 s after SIGKILL")
	}
}

// syncBuffer collects a process's output from its copying goroutines.
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

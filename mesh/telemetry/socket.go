package telemetry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SocketPrefix starts the name of every admin endpoint's abstract unix
// socket: "@zerohop/admin/" followed by the server's address
// ("@zerohop/admin/10.0.0.1:9000").
//
// Why abstract: abstract names live in the network namespace, not in a
// filesystem, so every tool in the server's network namespace finds the
// socket whatever mount namespace it runs in (two `ip netns exec`
// invocations, or two containers of one pod, see different /run and /sys
// but the same abstract names), nothing is left behind when the server is
// killed, and no directory needs to exist or be writable. Abstract
// sockets have no file permissions, so the admin endpoint checks the
// caller's credentials (SO_PEERCRED) instead: only root and the server's
// own user are served.
const SocketPrefix = "@zerohop/admin/"

// SocketName is the abstract socket name of the admin endpoint of the
// server at addr.
func SocketName(addr string) string { return SocketPrefix + addr }

// Sockets lists the admin sockets listening in the calling thread's
// network namespace (read from /proc/thread-self/net/unix: /proc/net is
// the main thread's), sorted.
func Sockets() ([]string, error) {
	f, err := os.Open("/proc/thread-self/net/unix")
	if errors.Is(err, os.ErrNotExist) { // before Linux 3.17
		f, err = os.Open("/proc/net/unix")
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: listing admin sockets: %w", err)
	}
	defer f.Close()
	return parseProcNetUnix(f)
}

// soAcceptCon is __SO_ACCEPTCON, the Flags bit of a listening socket in
// /proc/net/unix.
const soAcceptCon = 0x10000

func parseProcNetUnix(r interface{ Read([]byte) (int, error) }) ([]string, error) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		// Num RefCount Protocol Flags Type St Inode [Path]
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !strings.HasPrefix(fields[7], SocketPrefix) {
			continue
		}
		flags, err := strconv.ParseUint(fields[3], 16, 32)
		if err != nil || flags&soAcceptCon == 0 {
			continue
		}
		seen[fields[7]] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("telemetry: reading /proc/net/unix: %w", err)
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// ErrNoAdmin: no admin socket listens in this network namespace.
var ErrNoAdmin = errors.New("no zerohop admin socket in this network namespace")

// FindSocket returns the admin socket to talk to when none was named: the
// only one in this network namespace. With none it fails with ErrNoAdmin;
// with several it names them (pick one with --admin).
func FindSocket() (string, error) {
	socks, err := Sockets()
	if err != nil {
		return "", err
	}
	switch len(socks) {
	case 0:
		return "", ErrNoAdmin
	case 1:
		return socks[0], nil
	}
	return "", fmt.Errorf("telemetry: %d admin sockets in this network namespace (%s): name one with --admin unix:NAME",
		len(socks), strings.Join(socks, ", "))
}

// Endpoint is where an admin endpoint listens, as the --admin flag writes
// it: "host:port" for TCP, "unix:PATH" for a unix socket (PATH starting
// with "@" is an abstract name).
type Endpoint struct {
	Network, Address string
}

// ParseEndpoint parses an --admin value.
func ParseEndpoint(s string) (Endpoint, error) {
	if rest, ok := strings.CutPrefix(s, "unix:"); ok {
		if rest == "" {
			return Endpoint{}, fmt.Errorf("telemetry: admin address %q: unix: needs a path or @name", s)
		}
		return Endpoint{"unix", rest}, nil
	}
	if strings.HasPrefix(s, "@") || strings.HasPrefix(s, "/") {
		return Endpoint{"unix", s}, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return Endpoint{}, fmt.Errorf("telemetry: admin address %q: want HOST:PORT or unix:PATH (%w)", s, err)
	}
	return Endpoint{"tcp", s}, nil
}

func (e Endpoint) String() string {
	if e.Network == "unix" {
		return "unix:" + e.Address
	}
	return e.Address
}

// HTTPClient returns an HTTP client that reaches e whatever URL it is
// given (use "http://zerohop/..." for unix sockets).
func (e Endpoint) HTTPClient(timeout time.Duration) *http.Client {
	d := net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, e.Network, e.Address)
		},
		MaxIdleConns: 1, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// peerCredListener serves only connections from root or the process's
// own user (SO_PEERCRED), for sockets without file permissions.
type peerCredListener struct {
	net.Listener
	uid      uint32
	rejected func(uid uint32)
}

func (l *peerCredListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == 0 || uid == l.uid) {
			return c, nil
		}
		if l.rejected != nil {
			l.rejected(uid)
		}
		c.Close()
	}
}

func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return cred.Uid, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerohop/zerohop/mesh/telemetry"
)

func init() {
	register(command{name: "top", summary: "live view of a running server: loop and method rates, p99, drops, XDP, endpoints", run: runTop})
}

func runTop(args []string) int { return top(os.Stdin, os.Stdout, os.Stderr, args) }

const topUsage = `usage: zerohop top [--admin ADDR] [--interval 1s] [--once]

A live view of a running server over its admin endpoint: per-loop and
per-method rates and latency quantiles over the last interval, drops, the
XDP counters of its interface and its client endpoints. Without --admin it
finds the server's abstract socket in this network namespace. q, Ctrl-C,
SIGINT, SIGTERM, SIGHUP or SIGPIPE quit (exit 0) with the terminal restored;
--once prints one view without touching the terminal.`

// top redraws a server's /stat once per interval until q or Ctrl-C; the
// fetches run in the background (topModel), so a slow or unreachable
// server shows as a status line and never delays a key. The
// terminal is put in raw mode (no echo, keys one by one, Ctrl-C as a key)
// on the alternate screen, and restored on every way out. Like serve, a
// signal is its normal end (exit 0), except under --once, where one
// before the view is printed exits 128+signal.
func top(in *os.File, out *os.File, errOut io.Writer, args []string) int {
	fs := newFlags("top", topUsage)
	admin := fs.String("admin", "", "the server's admin endpoint: HOST:PORT or unix:PATH|@NAME (default: the only "+telemetry.SocketPrefix+"* socket in this network namespace)")
	interval := fs.Duration("interval", time.Second, "refresh interval")
	once := fs.Bool("once", false, "print one view (rates over one interval) and exit, without touching the terminal")
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fs.usageError(errOut, "unexpected argument %q: top takes only flags", fs.Arg(0))
	case *interval <= 0:
		return fs.usageError(errOut, "--interval %v: must be positive, e.g. --interval 1s", *interval)
	}
	if *admin != "" {
		if _, err := telemetry.ParseEndpoint(*admin); err != nil {
			return fs.usageError(errOut, "--admin %q: %v", *admin, err)
		}
	}
	sig := signalContext(context.Background())
	defer sig.stop()
	ep, err := adminEndpoint(*admin)
	if err != nil {
		if errors.Is(err, telemetry.ErrNoAdmin) {
			err = fmt.Errorf("%w: give --admin ADDR, or run in the server's network namespace (ip netns exec NS zerohop top)", err)
		}
		return fail(errOut, "top", err, nil)
	}
	c := ep.HTTPClient(*interval + 2*time.Second)
	defer c.CloseIdleConnections()
	fetch := func() (telemetry.StatReport, error) { return fetchStat(c, ep) }
	// The first report is fetched before the terminal is touched; a
	// signal meanwhile ends top without waiting for the client's timeout.
	first := make(chan statMsg, 1)
	go func() { first <- fetchMsg(fetch) }()
	var prev telemetry.StatReport
	select {
	case r := <-first:
		if r.err != nil {
			return fail(errOut, "top", r.err, nil)
		}
		prev = r.rep
	case <-sig.Done():
		if *once {
			return sig.interrupted(errOut, "top", "")
		}
		return exitOK
	}
	if *once {
		select {
		case <-time.After(*interval):
		case <-sig.Done():
			return sig.interrupted(errOut, "top", "")
		}
		cur, err := fetchStat(c, ep)
		if err != nil {
			return fail(errOut, "top", err, nil)
		}
		fmt.Fprint(out, strings.Join(renderTop(&prev, &cur, 0, ""), "\n")+"\n")
		return exitOK
	}

	restore, err := rawTerminal(in)
	if err != nil {
		return fail(errOut, "top", fmt.Errorf("%w (use --once without a terminal)", err), nil)
	}
	fmt.Fprint(out, "\x1b[?1049h\x1b[?25l") // alternate screen, cursor hidden
	defer func() {
		fmt.Fprint(out, "\x1b[?25h\x1b[?1049l")
		restore()
	}()

	keys := make(chan byte, 16)
	go func() {
		b := make([]byte, 1)
		for {
			if n, err := in.Read(b); err != nil || n == 0 {
				close(keys)
				return
			} else {
				keys <- b[0]
			}
		}
	}()
	tick := time.NewTicker(*interval)
	defer tick.Stop()

	m := newTopModel(prev, ep.String(), fetch)
	runTopLoop(m, keys, sig.Done(), tick.C, func() {
		width, height := terminalSize(out)
		lines := m.view(width)
		if height > 0 && len(lines) > height {
			lines = lines[:height]
		}
		var b strings.Builder
		b.WriteString("\x1b[H")
		for _, l := range lines {
			b.WriteString(l)
			b.WriteString("\x1b[K\r\n")
		}
		b.WriteString("\x1b[J")
		out.WriteString(b.String())
	})
	return exitOK
}

// topModel is the live view's state. Its update handles one message (a
// key, a tick, a fetched report) and never blocks: fetching /stat, which
// takes as long as the server takes to answer, is handed back as a
// command to run elsewhere, whose result comes back as a statMsg. So q
// quits at once also while a server is slow or gone.
type topModel struct {
	prev, cur telemetry.StatReport
	status    string
	admin     string // the endpoint, for the status line
	fetch     func() (telemetry.StatReport, error)
	// fetching is when the fetch in flight started (zero: none is): a
	// tick meanwhile starts no second one.
	fetching time.Time
}

type (
	keyMsg  byte
	tickMsg struct{}
	statMsg struct {
		rep telemetry.StatReport
		err error
	}
)

func fetchMsg(fetch func() (telemetry.StatReport, error)) statMsg {
	rep, err := fetch()
	return statMsg{rep, err}
}

func newTopModel(first telemetry.StatReport, admin string, fetch func() (telemetry.StatReport, error)) *topModel {
	return &topModel{prev: first, cur: first, admin: admin, fetch: fetch, status: "waiting for the first interval…"}
}

// update applies msg. It returns quit to end top, or a command to run in
// the background whose result is the next message.
func (m *topModel) update(msg any) (quit bool, cmd func() any) {
	switch msg := msg.(type) {
	case keyMsg:
		return msg == 'q' || msg == 'Q' || msg == 3, nil // 3: Ctrl-C in raw mode
	case tickMsg:
		if !m.fetching.IsZero() {
			m.status = fmt.Sprintf("waiting for %s to answer /stat (%.0f s)…", m.admin, time.Since(m.fetching).Seconds())
			return false, nil
		}
		m.fetching = time.Now()
		fetch := m.fetch
		return false, func() any { return fetchMsg(fetch) }
	case statMsg:
		m.fetching = time.Time{}
		if msg.err != nil {
			m.status = "error: " + msg.err.Error()
		} else {
			m.prev, m.cur, m.status = m.cur, msg.rep, ""
		}
	}
	return false, nil
}

// view renders the model, width columns wide (0: unbounded).
func (m *topModel) view(width int) []string { return renderTop(&m.prev, &m.cur, width, m.status) }

// runTopLoop feeds m keys and ticks until a key quits, keys closes or
// done, drawing after every message. The commands update returns run in
// goroutines of their own (one at a time: update starts no fetch while
// one is in flight); one still running at the end delivers into a
// buffered channel nobody reads and exits.
func runTopLoop(m *topModel, keys <-chan byte, done <-chan struct{}, tick <-chan time.Time, draw func()) {
	results := make(chan any, 1)
	draw()
	for {
		var msg any
		select {
		case k, ok := <-keys:
			if !ok {
				return
			}
			msg = keyMsg(k)
		case <-done:
			return
		case <-tick:
			msg = tickMsg{}
		case r := <-results:
			msg = r
		}
		quit, cmd := m.update(msg)
		if quit {
			return
		}
		if cmd != nil {
			go func() { results <- cmd() }()
		}
		draw()
	}
}

// rawTerminal puts the terminal on f in raw input mode and returns how to
// restore it.
func rawTerminal(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("stdin is not a terminal: %w", err)
	}
	raw := *old
	raw.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Iflag &^= unix.IXON | unix.ICRNL
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, fmt.Errorf("setting raw mode: %w", err)
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

func terminalSize(f *os.File) (width, height int) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0
	}
	return int(ws.Col), int(ws.Row)
}

// rate is (b−a) per second over dt.
func rate(a, b uint64, dt float64) float64 {
	if dt <= 0 || b < a {
		return 0
	}
	return float64(b-a) / dt
}

func fmtRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return d.Round(time.Millisecond).String()
}

// renderTop lays out one view: rates are over the interval from prev to
// cur, p99 is over the values recorded in it. width 0 means unbounded.
func renderTop(prev, cur *telemetry.StatReport, width int, status string) []string {
	dt := cur.Time.Sub(prev.Time).Seconds()
	var lines []string
	add := func(format string, a ...any) {
		l := fmt.Sprintf(format, a...)
		if width > 0 && len([]rune(l)) > width {
			l = string([]rune(l)[:width])
		}
		lines = append(lines, l)
	}
	title := "zerohop top"
	if s := cur.Server; s != nil {
		state := "serving"
		if s.Draining {
			state = "DRAINING"
		}
		title += fmt.Sprintf(" — %s (%s) %s", s.Addr, s.Backend, state)
	}
	add("%s   %s   interval %.1fs   q: quit", title, cur.Time.Format("15:04:05"), dt)
	if status != "" {
		add("%s", status)
	}
	if s, p := cur.Server, prev.Server; s != nil && p != nil {
		add("")
		add("%-6s %-8s %-5s %9s %9s %9s %8s %9s", "LOOP", "QUEUES", "CORE", "RX/s", "TX/s", "REQ/s", "DROP/s", "p99")
		for i, l := range s.Loops {
			var pl telemetry.LoopReport
			if i < len(p.Loops) {
				pl = p.Loops[i]
			}
			_, q := telemetry.Interval(&pl.Latency, &l.Latency)
			add("%-6d %-8s %-5d %9s %9s %9s %8s %9s", l.Queue, intsOrDash(l.Queues), l.Core, fmtRate(rate(pl.RX, l.RX, dt)),
				fmtRate(rate(pl.TX, l.TX, dt)), fmtRate(rate(pl.Requests, l.Requests, dt)),
				fmtRate(rate(sumValues(pl.Dropped), sumValues(l.Dropped), dt)), fmtDur(q(0.99)))
		}
		add("")
		add("%-40s %9s %9s %9s %9s", "METHOD", "REQ/s", "ERR/s", "p50", "p99")
		prevM := map[string]telemetry.MethodReport{}
		for _, m := range p.Methods {
			prevM[m.Method] = m
		}
		for _, m := range s.Methods {
			pm := prevM[m.Method]
			errs := sumValues(m.Statuses) - m.Statuses["OK"]
			perrs := sumValues(pm.Statuses) - pm.Statuses["OK"]
			_, q := telemetry.Interval(&pm.Latency, &m.Latency)
			add("%-40s %9s %9s %9s %9s", m.Method, fmtRate(rate(pm.Requests, m.Requests, dt)), fmtRate(rate(perrs, errs, dt)),
				fmtDur(q(0.5)), fmtDur(q(0.99)))
		}
		var drops []string
		for _, reason := range sortedKeys(s.Total.Dropped) {
			if r := rate(p.Total.Dropped[reason], s.Total.Dropped[reason], dt); r > 0 || s.Total.Dropped[reason] > 0 {
				drops = append(drops, fmt.Sprintf("%s %s/s (%d)", reason, fmtRate(r), s.Total.Dropped[reason]))
			}
		}
		if len(drops) == 0 {
			drops = []string{"none"}
		}
		add("")
		add("DROPS  %s", strings.Join(drops, "  "))
		t, pt := s.Total, p.Total
		add("RUNTIME ANSWERS/s  bad_frame %s  unknown_method %s  panics %s  overloaded %s  too_large %s  expired %s",
			fmtRate(rate(pt.BadFrame, t.BadFrame, dt)), fmtRate(rate(pt.UnknownMethod, t.UnknownMethod, dt)),
			fmtRate(rate(pt.Panics, t.Panics, dt)), fmtRate(rate(pt.Overloaded, t.Overloaded, dt)),
			fmtRate(rate(pt.TooLarge, t.TooLarge, dt)), fmtRate(rate(pt.Expired, t.Expired, dt)))
	}
	if x, px := cur.XDP, prev.XDP; x != nil && px != nil {
		add("")
		if x.Error != "" {
			add("XDP %s: %s", x.Iface, x.Error)
		} else {
			c, pc := x.Counters, px.Counters
			add("XDP %s /s  redirect %s  pass %s  acl_drop %s  no_socket %s  stale %s  fragment %s  malformed %s",
				x.Iface, fmtRate(rate(pc.Redirected, c.Redirected, dt)), fmtRate(rate(pc.Passed, c.Passed, dt)),
				fmtRate(rate(pc.ACLDropped, c.ACLDropped, dt)), fmtRate(rate(pc.NoSocket, c.NoSocket, dt)),
				fmtRate(rate(pc.Stale, c.Stale, dt)), fmtRate(rate(pc.Fragment, c.Fragment, dt)),
				fmtRate(rate(pc.Malformed, c.Malformed, dt)))
			add("    servers %d  services %d  ACL rules %d", len(x.Slots), len(x.Services), len(x.ACL))
		}
	}
	if cl, pcl := cur.Client, prev.Client; cl != nil && pcl != nil {
		add("")
		if cl.Coverage.Methods {
			add("%-20s %-30s %9s %9s", "CLIENT SERVICE", "METHOD", "CALLS/s", "p99")
		}
		prevC := map[string]telemetry.ClientMethodReport{}
		for _, m := range pcl.Methods {
			prevC[m.Service+"\x00"+m.Method] = m
		}
		for _, m := range cl.Methods {
			pm := prevC[m.Service+"\x00"+m.Method]
			p99 := "-"
			if m.Latency != nil && pm.Latency != nil {
				_, q := telemetry.Interval(pm.Latency, m.Latency)
				p99 = fmtDur(q(0.99))
			}
			add("%-20s %-30s %9s %9s", m.Service, m.Method, fmtRate(rate(sumValues(pm.Statuses)+sumValues(pm.Failures),
				sumValues(m.Statuses)+sumValues(m.Failures), dt)), p99)
		}
		eps := append([]telemetry.EndpointReport(nil), cl.Endpoints...)
		sort.Slice(eps, func(i, j int) bool {
			if eps[i].Service != eps[j].Service {
				return eps[i].Service < eps[j].Service
			}
			return eps[i].Addr < eps[j].Addr
		})
		prevE := map[string]telemetry.EndpointReport{}
		for _, e := range pcl.Endpoints {
			prevE[e.Service+"\x00"+e.Addr] = e
		}
		add("%-20s %-24s %-10s %8s %9s %9s %9s %9s", "ENDPOINT SERVICE", "ADDR", "STATE", "BREAKER", "IN FLIGHT", "REQ/s", "RETX/s", "SRTT")
		for _, e := range eps {
			state, breaker, reqs, retx, srtt := "-", "-", "-", "-", "-"
			if cl.Coverage.State {
				state = e.State
			}
			if cl.Coverage.Breaker {
				breaker = fmt.Sprintf("%.2f", e.BreakerDrop)
			}
			if cl.Coverage.Transport {
				pe := prevE[e.Service+"\x00"+e.Addr]
				reqs, retx = fmtRate(rate(pe.Requests, e.Requests, dt)), fmtRate(rate(pe.Retransmits, e.Retransmits, dt))
				srtt = fmtDur(time.Duration(e.SRTTNs))
			}
			add("%-20s %-24s %-10s %8s %9d %9s %9s %9s", orDash(e.Service), e.Addr, state, breaker, e.InFlight, reqs, retx, srtt)
		}
	}
	if tr := cur.Tracing; tr != nil {
		add("")
		add("TRACING  ratio %g  sampled loop %d  blocking %d  dropped %d", tr.Ratio, tr.SampledLoop, tr.SampledBlocking, tr.Dropped)
	}
	return lines
}

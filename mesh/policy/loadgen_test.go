package policy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// The load generator runs in a process of its own (this test binary,
// re-executed), so its goroutines do not compete with the server's
// workers for the Go scheduler's Ps: in one process on two cores, a
// client offering 12,000 calls/s delayed the server's workers by
// milliseconds and the shedder measured that as queueing.
const loadgenEnv = "ZEROHOP_POLICY_LOADGEN"

func init() {
	if spec := os.Getenv(loadgenEnv); spec != "" {
		os.Exit(loadgenMain(spec))
	}
}

// loadSpec is what the load generator is asked to do: rate calls per
// second of method to addr for span (paced every tick), or with rate 0,
// count calls one at a time.
type loadSpec struct {
	Addr   string
	Method string
	Rate   int
	Span   time.Duration
	Count  int
}

// loadResult is what it saw.
type loadResult struct {
	Sent, OK, Overloaded, Other, Missing, NoRetryAfter int
	// OKLatency are the latencies of the OK answers, in nanoseconds.
	OKLatency []int64
	Err       string
}

func loadgenMain(spec string) int {
	var s loadSpec
	var res loadResult
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		res.Err = err.Error()
	} else if err := runLoad(s, &res); err != nil {
		res.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func runLoad(s loadSpec, res *loadResult) error {
	to, err := netip.ParseAddrPort(s.Addr)
	if err != nil {
		return err
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetReadBuffer(8 << 20)
	conn.SetWriteBuffer(8 << 20)
	buf := make([]byte, 65536)
	read := func(timeout time.Duration) (proto.Frame, time.Time, error) {
		conn.SetReadDeadline(time.Now().Add(timeout))
		n, err := conn.Read(buf)
		if err != nil {
			return nil, time.Time{}, err
		}
		f, err := proto.Parse(buf[:n])
		return f, time.Now(), err
	}
	if s.Rate == 0 {
		for i := range s.Count {
			begin := time.Now()
			if _, err := conn.Write(request(uint64(i+1), s.Method, "", []byte{0x08, 0x01})); err != nil {
				return err
			}
			res.Sent++
			f, at, err := read(5 * time.Second)
			if err != nil {
				return fmt.Errorf("call %d: %w", i, err)
			}
			if f.Status() != proto.StatusOK {
				return fmt.Errorf("call %d: status %v", i, f.Status())
			}
			res.OK++
			res.OKLatency = append(res.OKLatency, int64(at.Sub(begin)))
		}
		return nil
	}
	type answer struct {
		status proto.Status
		ra     bool
		at     time.Time
	}
	answers := map[uint64]answer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, at, err := read(2 * time.Second)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // quiet for 2 s: the load is over
			}
			if err != nil {
				continue
			}
			ra, has := f.RetryAfter()
			answers[f.RequestID()] = answer{f.Status(), has && ra > 0, at}
		}
	}()
	const tick = time.Millisecond
	perTick := s.Rate * int(tick) / int(time.Second)
	sentAt := make([]time.Time, 0, s.Rate*int(s.Span/time.Second+1))
	start := time.Now()
	next := start
	for time.Since(start) < s.Span {
		now := time.Now()
		for range perTick {
			if _, err := conn.Write(request(uint64(len(sentAt)+1), s.Method, "", []byte{0x08, 0x01})); err != nil {
				return err
			}
			sentAt = append(sentAt, now)
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	<-done
	res.Sent = len(sentAt)
	for i, at := range sentAt {
		a, ok := answers[uint64(i+1)]
		switch {
		case !ok:
			res.Missing++
		case a.status == proto.StatusOK:
			res.OK++
			res.OKLatency = append(res.OKLatency, int64(a.at.Sub(at)))
		case a.status == proto.StatusOverloaded:
			res.Overloaded++
			if !a.ra {
				res.NoRetryAfter++
			}
		default:
			res.Other++
		}
	}
	return nil
}

// load runs the load generator as a subprocess and returns its result.
func load(t testing.TB, s loadSpec) loadResult {
	t.Helper()
	spec, _ := json.Marshal(s)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadgenEnv+"="+string(spec))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("load generator: %v", err)
	}
	var res loadResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("load generator output %q: %v", out, err)
	}
	if res.Err != "" {
		t.Fatalf("load generator: %s", res.Err)
	}
	return res
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.OKLatency) == 0 {
		return 0
	}
	s := slices.Clone(r.OKLatency)
	slices.Sort(s)
	return time.Duration(s[min(len(s)-1, int(q*float64(len(s))))])
}

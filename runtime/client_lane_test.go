package runtime

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// TestLaneCallsTakeTheCallerPath: a synchronous UDP call runs on a caller
// lane (counted, with the endpoint's counters and RTT kept as on the
// loop); Go, a Client with interceptors and an engine without lanes go
// through the loop.
func TestLaneCallsTakeTheCallerPath(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	e := testEngine(t)
	c := dialOn(t, e, srv.addr.String())
	ctx := testContext(t)
	const calls = 20
	for i := range calls {
		p := payloadFor(i)
		if r, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(r.Payload, p) {
			t.Fatalf("call %d: %x, %v", i, r.Payload, err)
		}
	}
	if got := e.Stats().LaneCalls; got != calls {
		t.Errorf("%d calls on caller lanes, want %d", got, calls)
	}
	if st := c.Stats(); st.Requests != calls || st.Replies != calls || st.SRTT == 0 || st.InFlight != 0 {
		t.Errorf("stats %+v, want %d requests and replies, an RTT, none in flight", st, calls)
	}
	pipeline(t, c, 50, 8)
	withInterceptor := dialOn(t, e, srv.addr.String(), WithInterceptors(countingInterceptor{}))
	if _, err := withInterceptor.Call(ctx, methodEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := e.Stats().LaneCalls; got != calls {
		t.Errorf("%d calls on caller lanes after Go and an intercepted Call, want still %d", got, calls)
	}

	noLanes := testEngine(t, WithCallerLanes(0))
	c0 := dialOn(t, noLanes, srv.addr.String())
	if _, err := c0.Call(ctx, methodEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := noLanes.Stats().LaneCalls; got != 0 {
		t.Errorf("%d lane calls on an engine WithCallerLanes(0)", got)
	}
	if _, err := NewEngine(WithCallerLanes(-1)); err == nil {
		t.Error("WithCallerLanes(-1) accepted")
	}
}

type countingInterceptor struct{}

func (countingInterceptor) Before(*Attempt) error          { return nil }
func (countingInterceptor) After(*Attempt, *AttemptResult) {}

// TestLaneCallEnds: a call blocked on a lane for a server that never
// answers ends with its context's cancellation, with Client.Close
// (ErrClientClosed), and with Engine.Close, which returns.
func TestLaneCallEnds(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	for _, how := range []string{"cancel", "client-close", "engine-close"} {
		t.Run(how, func(t *testing.T) {
			e := testEngine(t, WithCallerLanes(1))
			c := dialOn(t, e, srv.addr.String())
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			copiesBefore := srv.totalCopies()
			errs := make(chan error, 1)
			go func() {
				_, err := c.Call(ctx, methodSilent, nil, nil)
				errs <- err
			}()
			for deadline := time.Now().Add(5 * time.Second); srv.totalCopies() == copiesBefore && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if e.Stats().LaneCalls != 1 {
				t.Fatalf("the call did not take the lane: %+v", e.Stats())
			}
			want := ErrClientClosed
			switch how {
			case "cancel":
				cancel()
				want = context.Canceled
			case "client-close":
				c.Close()
			case "engine-close":
				closed := make(chan error, 1)
				go func() { closed <- e.Close() }()
				select {
				case err := <-closed:
					if err != nil {
						t.Errorf("Engine.Close: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Engine.Close did not return with a call on a lane")
				}
			}
			select {
			case err := <-errs:
				if !errors.Is(err, want) {
					t.Errorf("call ended with %v, want %v", err, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not end")
			}
		})
	}
}

// TestLaneSwitchesEndpoints: one lane serving calls to two servers in
// turn, one of which answers every request three times, gives each call
// its own reply; the late copies are counted as the first server's
// duplicates, never taken for the other's replies.
func TestLaneSwitchesEndpoints(t *testing.T) {
	noisy := startGWIRServer(t, serverConfig{duplicates: 2})
	quiet := startGWIRServer(t, serverConfig{})
	e := testEngine(t, WithCallerLanes(1))
	a, b := dialOn(t, e, noisy.addr.String()), dialOn(t, e, quiet.addr.String())
	ctx := testContext(t)
	for i := range 100 {
		c := a
		if i%2 == 1 {
			c = b
		}
		p := payloadFor(i)
		if r, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(r.Payload, p) {
			t.Fatalf("call %d: %x, %v", i, r.Payload, err)
		}
	}
	if st := b.Stats(); st.Duplicates != 0 || st.Replies != 50 {
		t.Errorf("quiet server's stats %+v: want 50 replies, no duplicates", st)
	}
	if st := a.Stats(); st.Replies != 50 || st.Duplicates > 100 {
		t.Errorf("noisy server's stats %+v: want 50 replies, at most 100 duplicates", st)
	}
	if got := e.Stats().LaneCalls; got != 100 {
		t.Errorf("%d lane calls, want 100", got)
	}
}

// TestLanesAndLoopTogether: more concurrent callers than lanes: some calls
// take the lanes, the others the loop, all complete with their replies.
func TestLanesAndLoopTogether(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	e := testEngine(t, WithCallerLanes(2))
	c := dialOn(t, e, srv.addr.String())
	ctx := testContext(t)
	const callers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64)
			for i := range each {
				p := payloadFor(g*each + i)
				r, err := c.Call(ctx, methodEcho, p, buf)
				if err != nil || !bytes.Equal(r.Payload, p) {
					errs <- errors.Join(err, errors.New("wrong reply"))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Replies != callers*each || st.InFlight != 0 {
		t.Errorf("stats %+v, want %d replies", st, callers*each)
	}
	if got := e.Stats().LaneCalls; got == 0 || got > callers*each {
		t.Errorf("%d lane calls of %d", got, callers*each)
	}
	t.Logf("%d of %d calls on lanes", e.Stats().LaneCalls, callers*each)
}

// TestStaleRefusalDoesNotFailTheNextCall: oneway requests to a closed port
// leave an ICMP port unreachable pending on the socket they went from; a
// server then opens the port, and the next call to it completes.
func TestStaleRefusalDoesNotFailTheNextCall(t *testing.T) { onBothPaths(t, testStaleRefusal) }

func testStaleRefusal(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr)
	conn.Close()
	c := dialOn(t, testEngine(t, WithCallerLanes(1)), addr.String())
	ctx := testContext(t)
	for range 3 {
		c.Oneway(ctx, methodEcho, nil) // refused or not: the ICMP is what matters
	}
	if conn, err = net.ListenUDP("udp4", addr); err != nil {
		t.Fatal(err)
	}
	serveGWIR(t, conn, serverConfig{})
	if _, err := c.Call(ctx, methodEcho, nil, nil); err != nil {
		t.Errorf("call to a live server: %v", err)
	}
}

// TestStatsDuringEngineClose: Stats of a Client whose engine is closing
// neither hangs nor holds up the engine's calls.
func TestStatsDuringEngineClose(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	for round := range 20 {
		e := testEngine(t)
		c := dialOn(t, e, srv.addr.String())
		if _, err := c.Call(testContext(t), methodEcho, nil, nil); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for {
				select {
				case <-stop:
					return
				default:
					c.Stats()
				}
			}
		}()
		e.Close()
		close(stop)
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Stats hangs after Engine.Close", round)
		}
		if _, err := c.Call(testContext(t), methodEcho, nil, nil); !errors.Is(err, ErrClientClosed) {
			t.Fatalf("round %d: call on a closed engine: %v", round, err)
		}
	}
}

// TestForgetDuringLaneCall: a Client closed while its call runs on a lane
// lets the loop forget its endpoint (which a call through the loop made
// the loop know).
func TestForgetDuringLaneCall(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	e := testEngine(t, WithCallerLanes(1))
	c := dialOn(t, e, srv.addr.String())
	ctx := testContext(t)
	call := <-c.Go(ctx, methodEcho, nil, nil, nil).Done
	if call.Err != nil {
		t.Fatal(call.Err)
	}
	call.Release()
	if n := e.loops[0].addrs.Load(); n != 1 {
		t.Fatalf("the loop knows %d addresses, want 1", n)
	}
	copies := srv.totalCopies()
	errs := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, methodSilent, nil, nil)
		errs <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); srv.totalCopies() == copies && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if st := c.Stats(); st.InFlight != 1 || e.Stats().LaneCalls != 1 {
		t.Fatalf("the silent call is not in flight on a lane: %+v, %+v", st, e.Stats())
	}
	c.Close()
	if err := <-errs; !errors.Is(err, ErrClientClosed) {
		t.Errorf("lane call ended with %v, want ErrClientClosed", err)
	}
	for deadline := time.Now().Add(5 * time.Second); e.loops[0].addrs.Load() != 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := e.loops[0].addrs.Load(); n != 0 {
		t.Errorf("the loop still holds %d addresses after the Client closed", n)
	}
}

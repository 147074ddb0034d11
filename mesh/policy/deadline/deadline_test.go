package deadline

import (
	"math"
	"testing"
	"time"
)

const us = int64(time.Microsecond)

func TestServerSide(t *testing.T) {
	arrival := int64(5 * time.Second)
	d := FromBudget(arrival, 1500)
	if d != arrival+1500*us {
		t.Fatalf("FromBudget = %d", d)
	}
	if !Accept(d, arrival) || !Accept(d, d-1) || Accept(d, d) || Accept(d, d+1) {
		t.Fatal("Accept must hold strictly before the deadline only")
	}
	if Accept(FromBudget(arrival, 0), arrival) {
		t.Fatal("a zero budget was accepted")
	}
	if !Accept(None, math.MaxInt64-1) {
		t.Fatal("a call without a deadline was refused")
	}
	if got := FromBudget(0, math.MaxUint32); got != int64(math.MaxUint32)*us {
		t.Fatalf("largest budget: %d", got)
	}
}

func TestClientSide(t *testing.T) {
	now := int64(time.Hour)
	cases := []struct {
		left   int64
		budget uint32
		ok     bool
	}{
		{int64(time.Second), 1_000_000, true},
		{1500, 1, true}, // 1.5 µs rounds down to 1
		{999, 0, false}, // under a microsecond: never send
		{0, 0, false},   // expired
		{-int64(time.Second), 0, false},
		{int64(100 * time.Hour), math.MaxUint32, true}, // capped
	}
	for _, c := range cases {
		b, ok := Budget(now+c.left, now)
		if b != c.budget || ok != c.ok {
			t.Errorf("Budget with %v left = %d, %v; want %d, %v", time.Duration(c.left), b, ok, c.budget, c.ok)
		}
		if CanSend(now+c.left, now) != c.ok {
			t.Errorf("CanSend with %v left = %v", time.Duration(c.left), !c.ok)
		}
		// the budget a server derives never outlasts the client's deadline
		if ok && FromBudget(now, b) > now+c.left {
			t.Errorf("budget %d µs outlasts %v", b, time.Duration(c.left))
		}
	}
	if _, ok := Budget(None, now); ok || !CanSend(None, now) {
		t.Fatal("no deadline: no tag, but the call is sent")
	}

	rto := 20 * time.Millisecond
	d := now + int64(50*time.Millisecond)
	// attempts at 0, 20 and 40 ms: the third has 10 ms < RTO left
	if !Retry(d, now, rto) || !Retry(d, now+int64(rto), rto) || !Retry(d, now+int64(30*time.Millisecond), rto) {
		t.Fatal("a retry that fits was refused")
	}
	if Retry(d, now+int64(31*time.Millisecond), rto) || Retry(d, d, rto) {
		t.Fatal("a retry that does not fit was allowed")
	}
	if !Retry(None, now, rto) {
		t.Fatal("no deadline: retries are bounded by their count, not here")
	}
	if got := AttemptTimeout(d, now, rto); got != rto {
		t.Fatalf("AttemptTimeout = %v, want the RTO", got)
	}
	if got := AttemptTimeout(d, now+int64(45*time.Millisecond), rto); got != 5*time.Millisecond {
		t.Fatalf("AttemptTimeout near the deadline = %v, want 5ms", got)
	}
	if got := AttemptTimeout(d, d+1, rto); got != 0 {
		t.Fatalf("AttemptTimeout past the deadline = %v", got)
	}
	if got := AttemptTimeout(None, now, rto); got != rto {
		t.Fatalf("AttemptTimeout without a deadline = %v", got)
	}
}

// A simulated client that retransmits every RTO spends its attempts only
// inside the deadline, however the RTO and the budget relate.
func TestRetriesStayInsideTheBudget(t *testing.T) {
	for _, budget := range []time.Duration{time.Millisecond, 7 * time.Millisecond, 100 * time.Millisecond} {
		for _, rto := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond} {
			start := int64(time.Second)
			d := start + int64(budget)
			now, attempts := start, 0
			for attempts < 100 {
				if attempts == 0 && !CanSend(d, now) || attempts > 0 && !Retry(d, now, rto) {
					break
				}
				attempts++
				wait := AttemptTimeout(d, now, rto)
				if now+int64(wait) > d {
					t.Fatalf("budget %v rto %v: attempt %d waits past the deadline", budget, rto, attempts)
				}
				now += int64(wait)
			}
			if want := max(1, int(budget/rto)); attempts != want {
				t.Errorf("budget %v rto %v: %d attempts, want %d", budget, rto, attempts, want)
			}
		}
	}
}

func BenchmarkServerCheck(b *testing.B) {
	b.ReportAllocs()
	now := int64(time.Hour)
	for b.Loop() {
		now++
		if !Accept(FromBudget(now, 5000), now) {
			b.Fatal("refused")
		}
	}
}

func BenchmarkClientBudget(b *testing.B) {
	b.ReportAllocs()
	now := int64(time.Hour)
	d := now + int64(time.Hour)
	for b.Loop() {
		now++
		if _, ok := Budget(d, now); !ok || !Retry(d, now, time.Millisecond) {
			b.Fatal("refused")
		}
	}
}

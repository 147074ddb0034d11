package engine

import (
	"testing"
	"time"
)

func TestIdleClock(t *testing.T) {
	var c IdleClock
	if !c.Spin(true, time.Hour) {
		t.Fatal("a busy pass must keep spinning")
	}
	for i := 0; i < 100; i++ {
		if !c.Spin(false, time.Hour) {
			t.Fatalf("idle pass %d stopped spinning inside the window", i)
		}
	}
	var short IdleClock
	short.Spin(false, time.Nanosecond)
	stopped := false
	for i := 0; i < 2*idleClockEvery && !stopped; i++ {
		time.Sleep(time.Microsecond)
		stopped = !short.Spin(false, time.Nanosecond)
	}
	if !stopped {
		t.Fatal("never stopped spinning after the window")
	}
	var none IdleClock
	if none.Spin(true, 0) || none.Spin(false, 0) {
		t.Fatal("a zero window must never spin")
	}
}

package runtime

import (
	"testing"
	"time"
)

func TestIdleClock(t *testing.T) {
	var c idleClock
	if !c.spin(true, time.Hour) {
		t.Fatal("a busy pass must keep spinning")
	}
	for i := 0; i < 100; i++ {
		if !c.spin(false, time.Hour) {
			t.Fatalf("idle pass %d stopped spinning inside the window", i)
		}
	}
	var short idleClock
	short.spin(false, time.Nanosecond)
	stopped := false
	for i := 0; i < 2*idleClockEvery && !stopped; i++ {
		time.Sleep(time.Microsecond)
		stopped = !short.spin(false, time.Nanosecond)
	}
	if !stopped {
		t.Fatal("never stopped spinning after the window")
	}
	var none idleClock
	if none.spin(true, 0) || none.spin(false, 0) {
		t.Fatal("a zero window must never spin")
	}
}

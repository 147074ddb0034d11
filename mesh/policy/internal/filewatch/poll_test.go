package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type event struct {
	data string
	err  error
}

func TestPollReportsChangesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write := func(s string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	events := make(chan event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Poll(ctx, path, 2*time.Millisecond, func(data []byte, err error) { events <- event{string(data), err} })
	}()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Poll returned %v", err)
		}
	}()
	next := func(what string) event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second): // a bound against hangs
			t.Fatalf("no event after %s", what)
		}
		return event{}
	}
	quiet := func(what string) {
		t.Helper()
		// 25 polls without an event
		select {
		case ev := <-events:
			t.Fatalf("%s: unexpected event %+v", what, ev)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if ev := next("start"); ev.err != nil || ev.data != "one" {
		t.Fatalf("first: %+v", ev)
	}
	write("two")
	if ev := next("rewrite"); ev.err != nil || ev.data != "two" {
		t.Fatalf("rewrite: %+v", ev)
	}
	write("two") // a new inode, same bytes
	now := time.Now().Add(time.Second)
	os.Chtimes(path, now, now)
	quiet("same content")
	os.Remove(path)
	if ev := next("remove"); ev.err == nil {
		t.Fatalf("removed: %+v", ev)
	}
	quiet("still removed")
	write("three")
	if ev := next("restore"); ev.err != nil || ev.data != "three" {
		t.Fatalf("restored: %+v", ev)
	}
}

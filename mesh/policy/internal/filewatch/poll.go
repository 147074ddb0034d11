package filewatch

import (
	"bytes"
	"context"
	"os"
	"time"
)

// Poll calls changed with the file's content at once and then every time
// it changes, looking every interval, until ctx ends; it returns ctx's
// error. err is set (and data nil) when the file could not be stat'ed or
// read. changed runs on Poll's goroutine.
func Poll(ctx context.Context, path string, interval time.Duration, changed func(data []byte, err error)) error {
	var last struct {
		stat    fileStamp
		content []byte
		ok      bool
		seen    bool
	}
	check := func() {
		st, err := stamp(path)
		if err == nil && last.ok && st == last.stat {
			return
		}
		var data []byte
		if err == nil {
			data, err = os.ReadFile(path)
		}
		if err == nil && last.ok && bytes.Equal(data, last.content) {
			last.stat = st // touched, not changed
			return
		}
		if err != nil && last.seen && !last.ok {
			return // still broken: reported once
		}
		last.stat, last.content, last.ok, last.seen = st, data, err == nil, true
		changed(data, err)
	}
	check()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			check()
		}
	}
}

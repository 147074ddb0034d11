package main

import (
	"bytes"
	"sync"
)

// syncBuffer is a log destination that a server or subprocess writes
// while the test reads it. It is the one such buffer of this package's
// tests: a subprocess's or an in-process server's output is read while it
// may still be written, so a bare bytes.Buffer or strings.Builder races.
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

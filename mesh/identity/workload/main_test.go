package workload_test

import (
	"testing"

	"github.com/zerohop/zerohop/internal/leak"
)

// TestMain reports file descriptors the tests leak (the agent's socket,
// gRPC connections, handshake sockets).
func TestMain(m *testing.M) { leak.Main(m) }

package identity

import (
	"testing"

	"github.com/zerohop/zerohop/internal/leak"
)

// TestMain reports file descriptors the tests leak (handshake sockets).
func TestMain(m *testing.M) { leak.Main(m) }

package runtime

import (
	"testing"

	"github.com/zerohop/zerohop/internal/leak"

	_ "github.com/zerohop/zerohop/runtime/xdp" // the AF_XDP backend
)

func TestMain(m *testing.M) { leak.Main(m) }

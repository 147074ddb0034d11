package filewatch

import (
	"testing"

	"github.com/zerohop/zerohop/internal/leak"
)

func TestMain(m *testing.M) { leak.Main(m) }

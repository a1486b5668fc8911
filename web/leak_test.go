package web

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink()) }

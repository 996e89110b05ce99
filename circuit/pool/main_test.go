package pool

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: pools,
// engines, hosts and servers are closed in t.Cleanup, and Pool.Close waits
// for every goroutine the pool started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

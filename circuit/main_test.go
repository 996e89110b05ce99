package circuit

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// engine, host and server is closed in t.Cleanup, and Engine.Close waits
// for everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

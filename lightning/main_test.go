package lightning

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// Client must release its connection on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

package loopport

import (
	"net"
	"strconv"
	"testing"
)

// TestPickBelowEphemeralRange: picked ports are distinct, free and below
// the kernel's ephemeral range, where no port-0 listener or tor "auto"
// port can be handed one of them before the daemon binds it.
func TestPickBelowEphemeralRange(t *testing.T) {
	t.Parallel()
	hi := EphemeralLow()
	if hi-lowest < 1000 {
		t.Skipf("ephemeral range starts at %d: no room below it", hi)
	}
	ports, err := Pick(30)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 30 {
		t.Fatalf("got %d ports, want 30", len(ports))
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < lowest || p >= hi || seen[p] {
			t.Errorf("port %d: want distinct ports in [%d, %d)", p, lowest, hi)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d not free after the pick: %v", p, err)
			continue
		}
		l.Close()
	}
}

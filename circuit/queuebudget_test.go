package circuit

import (
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Cells a relayed circuit has queued toward a link are charged to the
// node's memory budget (Limits.MemoryBudget): a circuit whose next cell
// does not fit is destroyed with reason resource limit, its cells are
// given back, and the link and its other circuits stay.
func TestQueuedCellsChargeMemoryBudget(t *testing.T) {
	t.Parallel()
	const budget = 1 << 20
	// 0 another client, 1 the relay (last hop), 2 the neighbour's host.
	tn := newTestNet(t, 3, func(i int, cfg *Config) {
		if i == 1 {
			// Far above what the stream window lets the bulk circuit
			// queue (512 cells, 2 MiB), so that only the budget stops it.
			cfg.Limits.MaxCircuitQueue = 8192
			cfg.Limits.MemoryBudget = budget
		}
	})
	echoSrv := newTCPServer(t, echo)
	src := newTCPServer(t, source(1<<40))
	ctx := testCtx(t)
	relay := tn.engines[1]
	n := dialNeighbour(t, tn.hosts[2], tn.hosts[1])
	bulk := n.build(t, 1, tn.path(1))
	quiet := n.build(t, 2, tn.path(1))
	bulk.sendBegin(t, 1, src.addr())
	// The neighbour reads nothing: the link's flow control takes 64
	// cells, the rest of the stream window waits in the bulk circuit's
	// queue until the budget is used up.
	waitFor(ctx, t, "the bulk circuit to be destroyed", func() bool { return relay.Stats().RelayCircuits == 1 })
	var c cell.Cell
	got := 0
	for {
		if err := n.recv(&c); err != nil {
			t.Fatal(err)
		}
		if c.CircID() == bulk.id && c.Command() == cell.CmdDestroy {
			break
		}
		if c.CircID() != bulk.id || c.Command() != cell.CmdRelay {
			t.Fatalf("got %v on circuit %d", c.Command(), c.CircID())
		}
		got++
	}
	if r := parseDestroy(&c); r != cell.ReasonResource {
		t.Fatalf("bulk circuit destroyed with %v, want resource", r)
	}
	// Without the budget the whole stream window would have been sent
	// and the circuit kept.
	if got >= streamWindow {
		t.Fatalf("relay sent %d cells before DESTROY, a whole stream window", got)
	}
	// Its queue and stream are given back: only the quiet circuit is left.
	waitFor(ctx, t, "the budget to be given back", func() bool { return relay.Stats().Memory == circuitCost })
	quietStillWorks(ctx, t, tn, n, quiet, echoSrv.addr())
}

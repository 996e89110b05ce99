package node

import (
	"context"
	"log/slog"
	"testing"
)

// TestDeliveryRefillDeferred: a delivery node is the last hop of the
// circuits built to it and sees when each is built. Closing a used
// delivery circuit started its replacements at once, so a new circuit
// built to a delivery node a moment after a transaction's stream closed
// marked it as the same wallet's, linking its transactions on a quiet
// network. While the pool still holds a round's circuits the refill is
// now deferred by a random delay; only a pool short of them refills at
// once.
func TestDeliveryRefillDeferred(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{ctx: ctx, log: slog.New(slog.DiscardHandler)}
	p := &n.deliveryPool
	p.ready = make([]readyCircuit, deliveryRoundCircuits) // a round's two, unused
	n.deliveryUsed()                                      // a transaction's circuit closed
	p.mu.Lock()
	building, armed := p.building, p.timer != nil
	p.ready = nil // not real circuits: nothing for closeDeliveryPool to close
	p.mu.Unlock()
	cancel()
	n.closeDeliveryPool()
	n.wg.Wait()
	if building != 0 {
		t.Fatalf("%d replacement builds started as the used circuit closed", building)
	}
	if !armed {
		t.Fatal("no deferred refill armed")
	}
	for range 1000 {
		if d := deliveryRefillDelay(); d < deliveryRefillMin || d > 4*deliveryRefillMean {
			t.Fatalf("refill delay %v outside [%v, %v]", d, deliveryRefillMin, 4*deliveryRefillMean)
		}
	}
}

package mempool

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestSingleKnownClaimIsNotFinal: one delivery node that answers "already
// in block chain" (or any "already …" rejection) while no other node gives
// a verdict must not make the client drop the transaction: wallets take
// that answer as success, so a lying node would swallow it past the echo
// check. The client keeps it and tries again; two nodes agreeing (an
// honest answer for a confirmed transaction) still end it.
func TestSingleKnownClaimIsNotFinal(t *testing.T) {
	t.Parallel()
	for _, lie := range []Verdict{
		{Status: Rejected, Code: CodeAlreadyInChain, Message: "Transaction outputs already in utxo set"},
		{Status: Rejected, Code: CodeRejected, Message: "txn-already-known"},
	} {
		f := newFakeNet(t, 3)
		// node0 lies; node1 is unavailable until up is set.
		var up atomic.Bool
		lookup := f.servers[0].cfg.Lookup
		honest := f.servers[1].cfg.Submit
		s0, err := NewServer(ServerConfig{Lookup: lookup, Submit: func(context.Context, Submit) Verdict { return lie }})
		if err != nil {
			t.Fatal(err)
		}
		s1, err := NewServer(ServerConfig{Lookup: lookup, Submit: func(ctx context.Context, s Submit) Verdict {
			if !up.Load() {
				return Verdict{Status: Unavailable}
			}
			return honest(ctx, s)
		}})
		if err != nil {
			t.Fatal(err)
		}
		f.servers[0], f.servers[1] = s0, s1
		c := newTestClient(t, filepath.Join(t.TempDir(), "outbox.db"), f)
		h, want := testTx(t, 3, false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		got, err := c.Broadcast(ctx, h, nil)
		cancel()
		if err != nil || got != want {
			t.Fatalf("%q: Broadcast = %q, %v; want %q, still queued", lie.Message, got, err, want)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		for c.Stats().Rounds < 3 {
			select {
			case <-wctx.Done():
				t.Fatalf("%q: rounds %d", lie.Message, c.Stats().Rounds)
			case <-tick.C:
			}
		}
		tick.Stop()
		wcancel()
		if es, _ := c.Queued(); len(es) != 1 || c.Stats().Rejected != 0 {
			t.Fatalf("%q: queued %d, stats %+v: dropped on one node's word", lie.Message, len(es), c.Stats())
		}
		up.Store(true)
		waitEmpty(t, c)
		if st := c.Stats(); st.Delivered != 1 {
			t.Fatalf("%q: stats %+v", lie.Message, st)
		}
	}
}

// TestKnownClaimByBothNodesIsFinal: both delivery nodes saying the
// transaction is already in the chain ends it with that error.
func TestKnownClaimByBothNodesIsFinal(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 2)
	f.reject = &Verdict{Status: Rejected, Code: CodeAlreadyInChain, Message: "Transaction outputs already in utxo set"}
	c := newTestClient(t, filepath.Join(t.TempDir(), "outbox.db"), f)
	h, _ := testTx(t, 4, false)
	if _, err := c.Broadcast(context.Background(), h, nil); err == nil {
		t.Fatal("want the -27 error")
	}
	if es, _ := c.Queued(); len(es) != 0 {
		t.Fatalf("still queued: %+v", es)
	}
}

package mempool

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitGivenUp polls until c has given up one transaction and returns it.
func waitGivenUp(t *testing.T, c *Client) Entry {
	t.Helper()
	var gs []Entry
	pollUntil(t, func() (bool, error) {
		var err error
		gs, err = c.GivenUp()
		return len(gs) > 0, err
	}, func() string { return "nothing given up" })
	return gs[0]
}

// A transaction that no delivery node takes is given up after MaxAttempts
// rounds or once it is GiveUpAfter old: it leaves the queue, is listed as
// given up with the reason, is counted, and no round runs for it after.
// Sending it again queues it afresh; abort forgets a given-up one.
func TestGiveUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    ClientConfig
		reason string
	}{
		{"rounds", ClientConfig{MaxAttempts: 3, GiveUpAfter: time.Hour}, "in 3 rounds"},
		{"age", ClientConfig{MaxAttempts: 1 << 20, GiveUpAfter: 30 * time.Millisecond}, "within 30ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeNet(t, 3)
			f.down = true
			cfg := tc.cfg
			cfg.Dial, cfg.OutboxPath = f.dial, filepath.Join(t.TempDir(), "o.db")
			cfg.VerdictWait, cfg.RetryMin, cfg.RetryMax = time.Millisecond, time.Millisecond, 2*time.Millisecond
			cfg.EchoDelay = time.Millisecond
			c, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			h, id := testTx(t, 20, true)
			if _, err := c.Broadcast(context.Background(), h, nil); err != nil {
				t.Fatal(err)
			}
			g := waitGivenUp(t, c)
			if g.TxID != id || g.GaveUp.IsZero() || !strings.Contains(g.LastError, "given up") || !strings.Contains(g.LastError, tc.reason) {
				t.Fatalf("given up: %+v, want %s with reason %q", g, id, tc.reason)
			}
			if es, _ := c.Queued(); len(es) != 0 {
				t.Fatalf("still queued: %+v", es)
			}
			if st := c.Stats(); st.GaveUp != 1 || st.Delivered != 0 {
				t.Fatalf("stats %+v", st)
			}
			f.mu.Lock()
			dials := len(f.dials)
			f.mu.Unlock()
			if tc.name != "rounds" {
				return
			}
			if dials != 3 {
				t.Fatalf("%d dials, want one per round (3)", dials)
			}
			// Nothing more runs for it: a later Broadcast of another
			// transaction is the only new dial.
			f.mu.Lock()
			f.down = false
			f.mu.Unlock()
			h2, _ := testTx(t, 21, false)
			if _, err := c.Broadcast(context.Background(), h2, nil); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, c)
			if gs, _ := c.GivenUp(); len(gs) != 1 {
				t.Fatalf("given up list %+v", gs)
			}
			// Sent again, it is queued afresh and delivered.
			if _, err := c.Broadcast(context.Background(), h, nil); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, c)
			if gs, _ := c.GivenUp(); len(gs) != 0 {
				t.Fatalf("re-sent transaction still listed as given up: %+v", gs)
			}
		})
	}
}

// Abort forgets a given-up transaction; the list is capped at MaxGivenUp,
// dropping the one given up first.
func TestGivenUpListBounded(t *testing.T) {
	t.Parallel()
	o, err := OpenOutbox(filepath.Join(t.TempDir(), "o.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	base := time.Now()
	var first string
	for i := range MaxGivenUp + 1 {
		h, id := testTx(t, uint32(i), false)
		ck, err := CheckTx(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Add(Entry{TxID: id, Raw: ck.Raw, Added: base}); err != nil {
			t.Fatal(err)
		}
		if _, err := o.GiveUp(id, base.Add(time.Duration(i)*time.Second), "given up: test"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = id
		}
	}
	gs, err := o.GivenUp()
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != MaxGivenUp {
		t.Fatalf("%d given up kept, want %d", len(gs), MaxGivenUp)
	}
	for _, g := range gs {
		if g.TxID == first {
			t.Fatal("the oldest given-up entry was kept")
		}
	}
	if _, err := o.GiveUp(first, base, "x"); !errors.Is(err, ErrUnknownTx) {
		t.Fatalf("give up of an entry not queued: %v", err)
	}
	if found, err := o.Remove(gs[0].TxID); err != nil || !found {
		t.Fatalf("remove given up: %v %v", found, err)
	}
	if gs2, _ := o.GivenUp(); len(gs2) != MaxGivenUp-1 {
		t.Fatalf("%d after remove", len(gs2))
	}
}

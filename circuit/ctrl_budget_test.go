package circuit

import (
	"errors"
	"log/slog"
	"testing"
)

// TestCtrlCellsBoundedByBudget: the control cells a hop originates
// (SENDME, END, CONNECTED) are queued past the memory budget so that a
// full budget still lets streams end and windows move, but only by a
// bounded overdraft. A neighbour that stops reading its link while it
// makes the hop originate END after END (BEGINs past the stream cap) must
// not make one relayed circuit hold MaxCircuitQueue cells (20 MiB) of
// them whatever MemoryBudget says.
func TestCtrlCellsBoundedByBudget(t *testing.T) {
	t.Parallel()
	const budget = 1 << 20
	l := schedLink(func(lim *Limits) { lim.MemoryBudget = budget })
	l.e.mem.limit, l.e.mem.log = budget, slog.New(slog.DiscardHandler)
	q := l.newQueue(&hop{})
	if !q.charged {
		t.Fatal("a hop's queue is not charged")
	}
	data, ctrl := 0, 0
	for range l.e.cfg.Limits.MaxCircuitQueue {
		if err := q.reserve(false); err != nil {
			if !errors.Is(err, errQueueFull) {
				t.Fatal(err)
			}
			break
		}
		if err := q.pushReserved(l.e.pool.Get()); err != nil {
			t.Fatal(err)
		}
		data++
	}
	if used := l.e.mem.used.Load(); used > budget {
		t.Fatalf("DATA filled %d bytes, budget %d", used, budget)
	}
	for range l.e.cfg.Limits.MaxCircuitQueue {
		if err := q.reserve(true); err != nil {
			if !errors.Is(err, errQueueFull) {
				t.Fatal(err)
			}
			break
		}
		if err := q.pushReserved(l.e.pool.Get()); err != nil {
			t.Fatal(err)
		}
		ctrl++
	}
	if ctrl == 0 {
		t.Fatal("no control cell queued once DATA filled the budget")
	}
	if used, top := l.e.mem.used.Load(), int64(budget+budget/ctrlOverdraft); used > top {
		t.Fatalf("%d DATA then %d control cells hold %d bytes, more than the budget %d plus its overdraft (%d)",
			data, ctrl, used, budget, top)
	}
}

package circuit

import (
	"sync"
	"time"
)

// cellTrace records, for tests and benchmarks, when one circuit's cells
// pass each stage of the path: queued for a link (push), taken by the
// link's writer (take), read by the next node's link reader (read). The
// time between consecutive events is charged to the stage that ends it:
// waiting in our per-circuit queues (take), in the link's buffers below
// the writer (read), or being handled by a node (push, including the
// exit's round trip to its destination). Only one traced cell per link is
// followed at a time, which suits a ping-pong such as an echo.
type cellTrace struct {
	mu    sync.Mutex
	last  time.Time
	total [3]time.Duration // by traceStage
	peer  map[*link]*link  // a link's writer end → the neighbour's reader end
}

type traceStage int

const (
	tracePush traceStage = iota
	traceTake
	traceRead
)

func (t *cellTrace) add(s traceStage) {
	now := time.Now()
	t.mu.Lock()
	if !t.last.IsZero() {
		t.total[s] += now.Sub(t.last)
	}
	t.last = now
	t.mu.Unlock()
}

// taken records that l's writer took a traced cell, the seq-th cell it
// sent, and tells the neighbour's reader to look for it.
func (t *cellTrace) taken(l *link, seq int64) {
	t.add(traceTake)
	t.mu.Lock()
	p := t.peer[l]
	t.mu.Unlock()
	if p != nil {
		p.trace.Store(t)
		p.traceAt.Store(seq)
	}
}

package circuit

import (
	"log/slog"
	"sync/atomic"
	"unsafe"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// What memBudget charges, in bytes. These are what each thing holds in
// Go's heap, rounded up from TestIdleCircuitMemory and
// TestBeginEndStormMemory, not exact sizes.
const (
	// circuitCost is one relayed circuit at this hop, from CREATE to
	// DESTROY: the hop, its two AES-GCM layers and table entries (about
	// 3 KiB idle) and a handshake goroutine while it is pending.
	circuitCost = 8 << 10
	// streamCost is one last-hop stream apart from its buffered data: the
	// Stream, its two pump goroutines and their two cell buffers, and the
	// destination conn.
	streamCost = 32 << 10
	// chunkCost is one buffered DATA cell (a dataBuf).
	chunkCost = int64(unsafe.Sizeof(dataBuf{}))
	// cellCost is one cell waiting in a relayed circuit's queue toward a
	// link (circQueue): the pooled cell and its FIFO slot.
	cellCost = int64(cell.Size) + 8
)

// budgetUse is how much of the budget a reservation may fill.
type budgetUse uint8

const (
	// useNew is for new circuits and streams: up to 3/4 of the limit, so
	// that the streams already open keep room for the data their windows
	// allow.
	useNew budgetUse = iota
	// useData is for DATA buffered by open streams: up to the limit.
	useData
	// useCtrl is for the control cells a relayed circuit's hop originates
	// (SENDME, END, CONNECTED): up to the limit plus 1/ctrlOverdraft of
	// it, so that a full budget still lets streams end and windows move,
	// yet a neighbour that stops reading while it makes a hop originate
	// them cannot hold memory past that.
	useCtrl
)

// ctrlOverdraft: useCtrl may go 1/ctrlOverdraft of the limit past it.
const ctrlOverdraft = 8

// memBudget is the node-wide budget for circuit and stream buffers and
// relayed circuits' queued cells (Limits.MemoryBudget). A reservation that would take it past its
// budgetUse's share fails, and the caller refuses what asked for it
// (DESTROY or END with reason resource limit); release gives memory back.
// It logs once when it first refuses and once when it has drained to half
// the limit again. Safe for concurrent use and lock-free, since every DATA
// cell reserves on a link reader.
//
// It is not go-libp2p's resource manager: that one is the host's (node
// builds it; a span of its system scope takes two scope mutexes on every
// reservation, per cell here), its memory limit is shared with libp2p's
// own streams, so a flood of circuit data would starve the links and DHT
// that the relay needs to shed it, and its limit is not ours to set from
// Limits.
type memBudget struct {
	limit int64
	log   *slog.Logger
	used  atomic.Int64 // bytes reserved
	full  atomic.Bool  // a reservation was refused and used has not yet drained to limit/2
}

// reserve takes n bytes if they fit within u's share of the limit.
func (b *memBudget) reserve(n int64, u budgetUse) bool {
	top := b.limit
	switch u {
	case useNew:
		top -= b.limit / 4
	case useCtrl:
		top += b.limit / ctrlOverdraft
	}
	for {
		cur := b.used.Load()
		if cur+n > top {
			if !b.full.Swap(true) {
				b.log.Warn("memory budget reached: refusing new circuits and streams",
					"used", cur, "limit", b.limit)
			}
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// force takes n bytes whatever the limit: for what must be held anyway
// (the one cell an empty queue always takes, a circuit's last cells),
// so that its release balances.
func (b *memBudget) force(n int64) {
	b.used.Add(n)
}

// release gives back n bytes taken by reserve or force.
func (b *memBudget) release(n int64) {
	cur := b.used.Add(-n)
	if cur < 0 {
		b.log.Error("memory budget released more than reserved", "used", cur)
	}
	if cur <= b.limit/2 && b.full.Load() && b.full.Swap(false) {
		b.log.Info("memory budget below half again", "used", cur, "limit", b.limit)
	}
}

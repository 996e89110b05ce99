package mint

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestOpenQuoteHandoverBound: with the clock standing still (no quote
// reaches QuoteHold, none expires), a flood of buyers cannot make the
// fair share hand slots over forever. Each hand-over moves one slot from
// a buyer holding a to one holding at most a-2, which lowers the sum of
// the squares of the buyers' holdings by at least 2, and that sum starts
// at most MaxOpenQuotes × MaxOpenQuotesPerPeer, so there are at most half
// that many hand-overs (512 with the defaults) for every slot turnover.
// A greedy attacker here (always asking from the buyer that can take a
// slot and holds the most, else from a new one) gets 277 (-v prints it);
// the figure is quoted in docs/VOUCHERS.md §3.7.
func TestOpenQuoteHandoverBound(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const slots, perBuyer = 256, 4
	f.cfg.MaxOpenQuotes, f.cfg.MaxOpenQuotesPerPeer = slots, perBuyer
	m := f.open(t)
	now := f.clk.Now()
	expires := now.Add(m.cfg.InvoiceExpiry)
	var asked uint32
	ask := func(o quoteOwner) bool {
		asked++
		var id [16]byte
		id[0], id[1], id[2], id[3] = byte(asked), byte(asked>>8), byte(asked>>16), byte(asked>>24)
		return m.reserveOpen(id, o, now, expires)
	}
	buyers := 0
	newBuyer := func() quoteOwner {
		buyers++
		return peerOwner(peer.ID(fmt.Sprint("flood-", buyers)))
	}
	invoices := 0
	for range slots / perBuyer { // every slot held, four per buyer
		o := newBuyer()
		for range perBuyer {
			if !ask(o) {
				t.Fatal("free slot refused")
			}
			invoices++
		}
	}
	for range 100 * slots {
		held := map[quoteOwner]int{}
		most := 0
		for _, q := range m.open {
			held[q.owner]++
			most = max(most, held[q.owner])
		}
		var who quoteOwner
		whoN := -1
		for o, n := range held {
			if n < perBuyer && n+2 <= most && n > whoN {
				who, whoN = o, n
			}
		}
		if whoN < 0 {
			if most < 2 {
				break // every buyer holds one: nothing to hand over
			}
			who = newBuyer()
		}
		if !ask(who) {
			break
		}
		invoices++
	}
	handovers := invoices - slots
	t.Logf("%d slots, %d per buyer: %d hand-overs with the clock still (bound %d), %d buyers", slots, perBuyer, handovers, slots*perBuyer/2, buyers)
	if handovers > slots*perBuyer/2 {
		t.Fatalf("%d hand-overs, over the bound %d", handovers, slots*perBuyer/2)
	}
	if handovers == 0 {
		t.Fatal("no hand-over: the fair share never applied")
	}
	if len(m.open) != slots {
		t.Fatalf("%d slots held, want %d", len(m.open), slots)
	}
}

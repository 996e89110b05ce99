package mint

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/voucher"
)

// TestDisplacedQuoteAcrossRestart: a quote whose open-quote slot was
// handed to another buyer (fair share) is still paid and minted after a
// restart, exactly once: the same request gets the same signatures, any
// other request for it is refused.
func TestDisplacedQuoteAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.cfg.MaxOpenQuotes = 4
	f.cfg.MaxOpenQuotesPerPeer = 4
	m := f.open(t)
	quote := func(m *Mint, from peer.ID) (voucher.Quote, error) {
		t.Helper()
		resp, err := call(t, m, from, mustMarshal(t, &voucher.QuoteRequest{Amount: 3}))
		if err != nil {
			return voucher.Quote{}, err
		}
		q, err := voucher.ParseQuote(resp)
		if err != nil {
			t.Fatal(err)
		}
		return q, nil
	}
	var first voucher.Quote
	for i := range 4 {
		q, err := quote(m, "hog")
		if err != nil {
			t.Fatalf("quote %d: %v", i, err)
		}
		if i == 0 {
			first = q
		}
	}
	// A new buyer takes the hog's oldest slot: first is displaced.
	if _, err := quote(m, "newcomer"); err != nil {
		t.Fatalf("newcomer at a full table: %v", err)
	}
	m.Stop()

	m2 := f.open(t)
	if _, err := f.ln.PayInvoice(ctx, first.PayReq, 10); err != nil {
		t.Fatal(err)
	}
	ks := m2.keysetByID(t, first.Keyset)
	bs, mr := blindAll(t, ks, first.ID, []uint64{2, 1})
	req := mustMarshal(t, &mr)
	resp, err := call(t, m2, alice, req)
	if err != nil {
		t.Fatalf("displaced quote after a restart: %v", err)
	}
	if len(finalizeAll(t, ks, bs, resp)) != 2 {
		t.Fatal("displaced quote not minted in full")
	}
	again, err := call(t, m2, alice, req)
	if err != nil || !bytes.Equal(again, resp) {
		t.Fatalf("retry: %v, same=%v", err, bytes.Equal(again, resp))
	}
	_, other := blindAll(t, ks, first.ID, []uint64{2, 1})
	if _, err := call(t, m2, alice, mustMarshal(t, &other)); !errors.Is(err, voucher.ErrQuoteIssued) {
		t.Fatalf("second mint of one quote with other messages: %v, want ErrQuoteIssued", err)
	}
}

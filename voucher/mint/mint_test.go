package mint

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
)

const alice = peer.ID("alice")

// call runs one request through the mint's dispatcher and decodes the
// answer: the response bytes, or the refusal's sentinel.
func call(t *testing.T, m *Mint, from peer.ID, req []byte) ([]byte, error) {
	t.Helper()
	resp := m.serve(context.Background(), peerOwner(from), req)
	if voucher.MsgType(resp[0]) == voucher.MsgError {
		e, err := voucher.ParseErrorResponse(resp)
		if err != nil {
			t.Fatal(err)
		}
		return nil, e.Code.Err()
	}
	return resp, nil
}

func getQuote(t *testing.T, m *Mint, amount uint64) voucher.Quote {
	t.Helper()
	req, _ := (&voucher.QuoteRequest{Amount: amount}).MarshalBinary()
	resp, err := call(t, m, alice, req)
	if err != nil {
		t.Fatal(err)
	}
	q, err := voucher.ParseQuote(resp)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (m *Mint) keysetByID(t *testing.T, id voucher.KeysetID) *voucher.Keyset {
	t.Helper()
	for _, ks := range m.Keysets() {
		if ks.ID() == id {
			return ks
		}
	}
	t.Fatalf("keyset %s not published", id)
	return nil
}

func finalizeAll(t *testing.T, ks *voucher.Keyset, bs []*voucher.Blinded, resp []byte) []voucher.Voucher {
	t.Helper()
	r, err := voucher.ParseMintResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	var vs []voucher.Voucher
	for i, b := range bs {
		v, err := b.Finalize(ks.ID(), r.Sigs[i])
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestQuoteAndSign(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	q := getQuote(t, m, 11)
	if q.Amount != 11 || q.Payee != f.ln.PayeeKey || q.PriceMsatPerMB != 2000 {
		t.Fatalf("quote %+v", q)
	}
	ks := m.keysetByID(t, q.Keyset)
	bs, req := blindAll(t, ks, q.ID, []uint64{8, 2, 1})
	reqBytes, _ := req.MarshalBinary()

	if _, err := call(t, m, alice, reqBytes); !errors.Is(err, voucher.ErrNotPaid) {
		t.Fatalf("unpaid quote: %v, want ErrNotPaid", err)
	}
	if _, err := f.ln.PayInvoice(context.Background(), q.PayReq, 10); err != nil {
		t.Fatal(err)
	}
	resp, err := call(t, m, alice, reqBytes)
	if err != nil {
		t.Fatal(err)
	}
	vs := finalizeAll(t, ks, bs, resp)
	for i := range vs {
		if err := ks.Verify(&vs[i], f.clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// A retry returns the same signatures.
	again, err := call(t, m, alice, reqBytes)
	if err != nil || !bytes.Equal(again, resp) {
		t.Fatalf("retry: %v, same=%v", err, bytes.Equal(again, resp))
	}
	// Other blinded messages for the same quote are refused.
	_, other := blindAll(t, ks, q.ID, []uint64{8, 2, 1})
	ob, _ := other.MarshalBinary()
	if _, err := call(t, m, alice, ob); !errors.Is(err, voucher.ErrQuoteIssued) {
		t.Fatalf("second issue: %v, want ErrQuoteIssued", err)
	}
}

func TestMintRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	q := getQuote(t, m, 6)
	f.ln.PayInvoice(context.Background(), q.PayReq, 10)
	ks := m.keysetByID(t, q.Keyset)

	_, wrongTotal := blindAll(t, ks, q.ID, []uint64{4, 1})
	_, unknownQuote := blindAll(t, ks, [16]byte{9}, []uint64{4, 2})
	_, wrongKeyset := blindAll(t, ks, q.ID, []uint64{4, 2})
	wrongKeyset.Keyset[0] ^= 1
	_, badMsg := blindAll(t, ks, q.ID, []uint64{4, 2})
	badMsg.Blinded[0].Msg = bytes.Repeat([]byte{0xff}, 256) // ≥ N
	_, noKey := blindAll(t, ks, q.ID, []uint64{4, 2})
	noKey.Blinded = append(noKey.Blinded[:1], voucher.BlindedMsg{Amount: 32, Msg: noKey.Blinded[1].Msg})
	noKey.Blinded[0].Amount = 4

	tests := []struct {
		name string
		req  []byte
		want error
	}{
		{"wrong total", mustMarshal(t, &wrongTotal), voucher.ErrBadRequest},
		{"unknown quote", mustMarshal(t, &unknownQuote), voucher.ErrQuoteUnknown},
		{"unknown keyset", mustMarshal(t, &wrongKeyset), voucher.ErrUnknownKeyset},
		{"blinded message out of range", mustMarshal(t, &badMsg), voucher.ErrBadRequest},
		{"denomination without key", mustMarshal(t, &noKey), voucher.ErrBadRequest},
		{"garbage", []byte{3, 1, 2}, voucher.ErrMalformed},
		{"unknown type", []byte{99}, voucher.ErrMalformed},
		{"quote too big", mustMarshal(t, &voucher.QuoteRequest{Amount: 1 << 40}), voucher.ErrAmount},
		{"quote needs too many vouchers", mustMarshal(t, &voucher.QuoteRequest{Amount: 16*64 + 1}), voucher.ErrAmount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := call(t, m, alice, tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

type marshaler interface{ MarshalBinary() ([]byte, error) }

func mustMarshal(t *testing.T, m marshaler) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLightningDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	down := errors.New("lnd: connection refused")
	f.ln.SetFailures(down, nil, nil)
	req := mustMarshal(t, &voucher.QuoteRequest{Amount: 3})
	if _, err := call(t, m, alice, req); !errors.Is(err, voucher.ErrUnavailable) {
		t.Fatalf("quote with LND down: %v", err)
	}
	f.ln.SetFailures(nil, nil, nil)
	q := getQuote(t, m, 3)
	f.ln.PayInvoice(context.Background(), q.PayReq, 10)
	f.ln.SetFailures(nil, down, nil)
	_, mr := blindAll(t, m.keysetByID(t, q.Keyset), q.ID, []uint64{2, 1})
	if _, err := call(t, m, alice, mustMarshal(t, &mr)); !errors.Is(err, voucher.ErrUnavailable) {
		t.Fatalf("mint with LND down: %v", err)
	}
	f.ln.SetFailures(nil, nil, nil)
	if _, err := call(t, m, alice, mustMarshal(t, &mr)); err != nil {
		t.Fatalf("mint after LND is back: %v", err)
	}
}

func TestOpenQuoteCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cfg.MaxOpenQuotesPerPeer = 2
	m := f.open(t)
	req := mustMarshal(t, &voucher.QuoteRequest{Amount: 1})
	for range 2 {
		if _, err := call(t, m, alice, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := call(t, m, alice, req); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("third open quote: %v, want ErrBusy", err)
	}
	if _, err := call(t, m, peer.ID("bob"), req); err != nil {
		t.Fatalf("other peer: %v", err)
	}
	f.clk.Advance(11 * time.Minute) // the first quotes' invoices expired
	if _, err := call(t, m, alice, req); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestCrashAfterSignBeforeStore: the mint signs, then dies before storing.
// Nothing was sent; after a restart the retry is signed (with the same
// keys, so the same signatures) and stored.
func TestCrashAfterSignBeforeStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	q := getQuote(t, m, 5)
	f.ln.PayInvoice(context.Background(), q.PayReq, 10)
	ks := m.keysetByID(t, q.Keyset)
	bs, mr := blindAll(t, ks, q.ID, []uint64{4, 1})
	req := mustMarshal(t, &mr)
	m.afterSign = func() error { return errors.New("crash") }
	if _, err := call(t, m, alice, req); !errors.Is(err, voucher.ErrUnavailable) {
		t.Fatalf("crashed sign: %v", err)
	}
	m.Stop()

	m2 := f.open(t)
	if !m2.keysetByID(t, q.Keyset).Equal(ks) {
		t.Fatal("keyset changed across restart")
	}
	resp, err := call(t, m2, alice, req)
	if err != nil {
		t.Fatal(err)
	}
	finalizeAll(t, ks, bs, resp)
	m2.Stop()
	m3 := f.open(t)
	again, err := call(t, m3, alice, req)
	if err != nil || !bytes.Equal(again, resp) {
		t.Fatalf("retry after restart: %v, same=%v", err, bytes.Equal(again, resp))
	}
}

func TestRedeem(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	q := getQuote(t, m, 7)
	f.ln.PayInvoice(context.Background(), q.PayReq, 10)
	ks := m.keysetByID(t, q.Keyset)
	bs, mr := blindAll(t, ks, q.ID, []uint64{4, 2, 1})
	resp, err := call(t, m, alice, mustMarshal(t, &mr))
	if err != nil {
		t.Fatal(err)
	}
	vs := finalizeAll(t, ks, bs, resp)
	ctx := context.Background()

	forged := vs[2]
	forged.Sig = append([]byte(nil), vs[2].Sig...)
	forged.Sig[0] ^= 0x10
	got, err := m.Redeem(ctx, []voucher.Voucher{forged})
	if got != 0 || !errors.Is(err, voucher.ErrBadSignature) {
		t.Fatalf("forged: %d, %v", got, err)
	}
	alien := vs[2]
	alien.Keyset = voucher.KeysetID{1, 2, 3}
	if got, err := m.Redeem(ctx, []voucher.Voucher{alien}); got != 0 || !errors.Is(err, voucher.ErrUnknownKeyset) {
		t.Fatalf("unknown keyset: %d, %v", got, err)
	}

	payload, _ := voucher.EncodeBatch(vs[:2])
	if got, err := m.RedeemPayload(ctx, payload); got != 6 || err != nil {
		t.Fatalf("redeem: %d, %v", got, err)
	}
	// A replay, a replay mixed with a fresh voucher, a duplicate in one batch.
	if got, err := m.Redeem(ctx, vs[:1]); got != 0 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("replay: %d, %v", got, err)
	}
	if got, err := m.Redeem(ctx, []voucher.Voucher{vs[1], vs[2], vs[2]}); got != 1 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("mixed: %d, %v", got, err)
	}
	// Across a restart.
	m.Stop()
	m2 := f.open(t)
	if got, err := m2.Redeem(ctx, vs); got != 0 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("replay after restart: %d, %v", got, err)
	}
	if _, err := m2.RedeemPayload(ctx, []byte{1, 2, 3}); !errors.Is(err, voucher.ErrMalformed) {
		t.Fatalf("garbage payload: %v", err)
	}
	st, err := os.Stat(f.path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("store mode %v, %v", st.Mode(), err)
	}
}

// TestRotation: a new keyset is published ahead of time, the old one
// redeems through its grace period, then it is dropped and its spent
// entries pruned.
func TestRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var published [][]*voucher.Keyset
	f.cfg.OnKeysets = func(ks []*voucher.Keyset) { published = append(published, ks) }
	m := f.open(t)
	first := m.Keysets()
	if len(first) != 1 {
		t.Fatalf("%d keysets at start", len(first))
	}
	old := first[0]
	q := getQuote(t, m, 1)
	f.ln.PayInvoice(context.Background(), q.PayReq, 10)
	bs, mr := blindAll(t, old, q.ID, []uint64{1})
	resp, err := call(t, m, alice, mustMarshal(t, &mr))
	if err != nil {
		t.Fatal(err)
	}
	v := finalizeAll(t, old, bs, resp)[0]

	f.clk.Advance(19 * time.Hour) // last quarter of the 24 h lifetime
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	ks := m.Keysets()
	if len(ks) != 2 || !ks[1].NotBefore().Equal(old.NotAfter()) {
		t.Fatalf("next keyset not published ahead: %d keysets", len(ks))
	}
	f.clk.Advance(6 * time.Hour) // old keyset in grace: no minting, still redeems
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	if q := getQuote(t, m, 1); q.Keyset == old.ID() {
		t.Fatal("quote with a keyset out of its minting window")
	}
	if got, err := m.Redeem(context.Background(), []voucher.Voucher{v}); got != 1 || err != nil {
		t.Fatalf("redeem in grace: %d, %v", got, err)
	}
	f.clk.Advance(6 * time.Hour) // grace over
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	for _, k := range m.Keysets() {
		if k.ID() == old.ID() {
			t.Fatal("expired keyset still published")
		}
	}
	if got, err := m.Redeem(context.Background(), []voucher.Voucher{v}); got != 0 || !errors.Is(err, voucher.ErrUnknownKeyset) {
		t.Fatalf("redeem after grace: %d, %v", got, err)
	}
	if n, err := m.spent.Prune(f.clk.Now()); n != 1 || err != nil {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if len(published) < 3 {
		t.Fatalf("OnKeysets called %d times", len(published))
	}
}

// TestPruneQuotes: signed quotes go after IssuedRetention, unpaid quotes
// an hour after their invoice expired; a paid but unsigned quote stays.
func TestPruneQuotes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cfg.KeysetLifetime, f.cfg.IssuedRetention = 90*24*time.Hour, 24*time.Hour
	m := f.open(t)
	ctx := context.Background()
	unpaid := getQuote(t, m, 1)
	paid := getQuote(t, m, 2)
	f.ln.PayInvoice(ctx, paid.PayReq, 10)
	issued := getQuote(t, m, 4)
	f.ln.PayInvoice(ctx, issued.PayReq, 10)
	_, mr := blindAll(t, m.keysetByID(t, issued.Keyset), issued.ID, []uint64{4})
	if _, err := call(t, m, alice, mustMarshal(t, &mr)); err != nil {
		t.Fatal(err)
	}
	exists := func(q voucher.Quote) bool {
		_, err := m.loadQuote(q.ID)
		return err == nil
	}

	f.clk.Advance(2 * time.Hour)
	if err := m.pruneQuotes(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(unpaid) || !exists(paid) || !exists(issued) {
		t.Fatalf("after 2 h: unpaid %v paid %v issued %v", exists(unpaid), exists(paid), exists(issued))
	}
	f.clk.Advance(23 * time.Hour)
	if err := m.pruneQuotes(ctx); err != nil {
		t.Fatal(err)
	}
	if !exists(paid) || exists(issued) {
		t.Fatalf("after 25 h: paid %v issued %v", exists(paid), exists(issued))
	}
	// The paid quote can still be minted.
	_, mr = blindAll(t, m.keysetByID(t, paid.Keyset), paid.ID, []uint64{2})
	if _, err := call(t, m, alice, mustMarshal(t, &mr)); err != nil {
		t.Fatalf("late mint of a paid quote: %v", err)
	}
}

// TestRedeemCheapChecksFirst: a batch is checked in the documented order
// (VOUCHERS.md §2.5): format, then keyset, window and denomination of
// every voucher, then signatures, then the spent set. So the first
// refusal a mixed batch reports is the cheapest, whatever the vouchers'
// order, and the good vouchers are still credited.
func TestRedeemCheapChecksFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	q := getQuote(t, m, 7)
	f.ln.PayInvoice(context.Background(), q.PayReq, 10)
	ks := m.keysetByID(t, q.Keyset)
	bs, mr := blindAll(t, ks, q.ID, []uint64{4, 2, 1})
	resp, err := call(t, m, alice, mustMarshal(t, &mr))
	if err != nil {
		t.Fatal(err)
	}
	vs := finalizeAll(t, ks, bs, resp)
	ctx := context.Background()
	if got, err := m.Redeem(ctx, vs[:1]); got != 4 || err != nil {
		t.Fatalf("redeem: %d, %v", got, err)
	}
	spent := vs[0]
	forged := vs[1]
	forged.Sig = append([]byte(nil), vs[1].Sig...)
	forged.Sig[0] ^= 0x10
	wrongNode := vs[1]
	wrongNode.Keyset = voucher.KeysetID{9, 9, 9} // another node's keyset
	for _, tc := range []struct {
		name  string
		batch []voucher.Voucher
		want  error
		sats  uint64
	}{
		{"spent, forged, wrong node", []voucher.Voucher{spent, forged, wrongNode}, voucher.ErrUnknownKeyset, 0},
		{"spent, forged", []voucher.Voucher{spent, forged}, voucher.ErrBadSignature, 0},
		{"spent, good", []voucher.Voucher{spent, vs[2]}, voucher.ErrSpent, 1},
	} {
		got, err := m.Redeem(ctx, tc.batch)
		if got != tc.sats || !errors.Is(err, tc.want) {
			t.Fatalf("%s: %d sats, %v; want %d, %v", tc.name, got, err, tc.sats, tc.want)
		}
	}
	// The forged voucher's real twin is unspent: a refused signature
	// spends nothing.
	if got, err := m.Redeem(ctx, vs[1:2]); got != 2 || err != nil {
		t.Fatalf("twin of the forged voucher: %d, %v", got, err)
	}
}

package mint

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
)

// buyVouchers mints vouchers of amounts through a paid quote.
func buyVouchers(t *testing.T, f *fixture, m *Mint, amounts ...uint64) (*voucher.Keyset, []voucher.Voucher) {
	t.Helper()
	var total uint64
	for _, a := range amounts {
		total += a
	}
	q := getQuote(t, m, total)
	if _, err := f.ln.PayInvoice(context.Background(), q.PayReq, 10); err != nil {
		t.Fatal(err)
	}
	ks := m.keysetByID(t, q.Keyset)
	bs, mr := blindAll(t, ks, q.ID, amounts)
	resp, err := call(t, m, alice, mustMarshal(t, &mr))
	if err != nil {
		t.Fatal(err)
	}
	return ks, finalizeAll(t, ks, bs, resp)
}

// swapOf builds a swap of inputs for fresh blinded outputs of amounts
// under ks, with a random request id.
func swapOf(t *testing.T, ks *voucher.Keyset, inputs []voucher.Voucher, amounts ...uint64) ([]*voucher.Blinded, voucher.SwapRequest) {
	t.Helper()
	bs, mr := blindAll(t, ks, [voucher.QuoteIDSize]byte{}, amounts)
	r := voucher.SwapRequest{Inputs: inputs, Keyset: ks.ID(), Outputs: mr.Blinded}
	rand.Read(r.ID[:])
	return bs, r
}

// unspent fails the test if any of vs is in the mint's spent set.
func unspent(t *testing.T, m *Mint, ks *voucher.Keyset, vs ...voucher.Voucher) {
	t.Helper()
	for i := range vs {
		if spent, err := m.spent.IsSpent(voucher.EntryFor(ks, &vs[i])); err != nil || spent {
			t.Fatalf("voucher %d spent=%v, %v; want unspent", i, spent, err)
		}
	}
}

// TestSwap: a swap spends its inputs and signs its outputs; the old
// vouchers are then refused as spent and the new ones redeem; a retry of
// the same request gets the stored answer, byte for byte, across a
// restart, without signing again; a retry with another body under the
// same id is refused; a swap of a spent voucher names it and spends and
// signs nothing.
func TestSwap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	m := f.open(t)
	ks, vs := buyVouchers(t, f, m, 4, 2, 1, 1)

	bs, req := swapOf(t, ks, vs[:3], 2, 2, 2, 1)
	raw := mustMarshal(t, &req)
	resp, err := call(t, m, alice, raw)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := voucher.ParseSwapResponse(resp)
	if err != nil || len(sr.Sigs) != 4 {
		t.Fatalf("swap answer %+v, %v", sr, err)
	}
	var fresh []voucher.Voucher
	for i, b := range bs {
		v, err := b.Finalize(ks.ID(), sr.Sigs[i])
		if err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, v)
	}
	if got, err := m.Redeem(ctx, vs[:3]); got != 0 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("stale redemption after the swap: %d, %v; want 0, ErrSpent", got, err)
	}
	if got, err := m.Redeem(ctx, fresh); got != 7 || err != nil {
		t.Fatalf("swapped vouchers redeem for %d, %v; want 7", got, err)
	}
	if signed, replayed := m.SwapCounts(); signed != 1 || replayed != 0 {
		t.Fatalf("SwapCounts = %d, %d", signed, replayed)
	}

	m.Stop()
	m = f.open(t)
	again, err := call(t, m, alice, raw)
	if err != nil || !bytes.Equal(again, resp) {
		t.Fatalf("retry after restart: %v, same=%v", err, bytes.Equal(again, resp))
	}
	if signed, replayed := m.SwapCounts(); signed != 0 || replayed != 1 {
		t.Fatalf("after the retry: SwapCounts = %d, %d; want 0 signed, 1 replayed", signed, replayed)
	}
	other := req
	_, o := swapOf(t, ks, vs[:3], 4, 2, 1)
	other.Outputs = o.Outputs
	if _, err := call(t, m, alice, mustMarshal(t, &other)); !errors.Is(err, voucher.ErrSwapConflict) {
		t.Fatalf("same id, other body: %v, want ErrSwapConflict", err)
	}

	// The last voucher with one already swapped away: the answer names the
	// spent one; the unspent one stays unspent and nothing is signed.
	_, mixed := swapOf(t, ks, []voucher.Voucher{vs[3], vs[0]}, 4, 1)
	resp, err = call(t, m, alice, mustMarshal(t, &mixed))
	if err != nil {
		t.Fatal(err)
	}
	sr, err = voucher.ParseSwapResponse(resp)
	if err != nil || len(sr.Sigs) != 0 || !bytes.Equal(sr.States, []uint8{voucher.StateUnspent, voucher.StateSpent}) {
		t.Fatalf("swap with a spent input: %+v, %v", sr, err)
	}
	unspent(t, m, ks, vs[3])
	if signed, _ := m.SwapCounts(); signed != 0 {
		t.Fatalf("a swap with a spent input signed")
	}
	// The mint's own answers parse.
	if _, err := call(t, m, alice, mustMarshal(t, &voucher.SwapRequest{ID: mixed.ID, Inputs: vs[3:], Keyset: ks.ID(), Outputs: mixed.Outputs[1:]})); err != nil {
		t.Fatalf("the rest swapped under the same id (nothing was stored for it): %v", err)
	}
}

// TestSwapRefusals: hostile swap requests get clear error codes, and none
// spends or signs anything.
func TestSwapRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	ks, vs := buyVouchers(t, f, m, 4, 2, 1)

	_, ok := swapOf(t, ks, vs, 4, 2, 1)
	okRaw := mustMarshal(t, &ok)
	_, unbalanced := swapOf(t, ks, vs, 4, 2, 2)
	_, short := swapOf(t, ks, vs, 4, 2)
	forged := append([]voucher.Voucher(nil), vs...)
	forged[1].Sig = bytes.Clone(vs[1].Sig)
	forged[1].Sig[7] ^= 0x40
	_, badSig := swapOf(t, ks, forged, 4, 2, 1)
	alien := append([]voucher.Voucher(nil), vs...)
	alien[2].Keyset = voucher.KeysetID{0xde, 0xad}
	_, unknownIn := swapOf(t, ks, alien, 4, 2, 1)
	_, unknownOut := swapOf(t, ks, vs, 4, 2, 1)
	unknownOut.Keyset[0] ^= 1
	_, noKey := swapOf(t, ks, vs[:1], 4)
	noKey.Outputs[0].Amount = 32
	_, outOfRange := swapOf(t, ks, vs, 4, 2, 1)
	outOfRange.Outputs[0].Msg = bytes.Repeat([]byte{0xff}, 256) // ≥ N
	// A duplicate input cannot be encoded: splice one in by hand.
	dupRaw := func() []byte {
		_, two := swapOf(t, ks, []voucher.Voucher{vs[1], vs[2]}, 2, 1)
		b := mustMarshal(t, &two)
		e1, _ := vs[1].MarshalBinary()
		e2, _ := vs[2].MarshalBinary()
		at := 1 + voucher.SwapIDSize + 1 + len(e1)
		return append(append(append([]byte(nil), b[:at]...), e1...), b[at+len(e2):]...)
	}()
	withCount := func(off int, n byte) []byte { b := bytes.Clone(okRaw); b[off] = n; return b }
	inLen := 0
	for i := range vs {
		inLen += vs[i].EncodedLen()
	}
	outCount := 1 + voucher.SwapIDSize + 1 + inLen + voucher.KeysetIDSize

	tests := []struct {
		name string
		req  []byte
		want error
	}{
		{"unbalanced: more out", mustMarshal(t, &unbalanced), voucher.ErrBadRequest},
		{"unbalanced: less out", mustMarshal(t, &short), voucher.ErrBadRequest},
		{"bad signature", mustMarshal(t, &badSig), voucher.ErrBadSignature},
		{"unknown input keyset", mustMarshal(t, &unknownIn), voucher.ErrUnknownKeyset},
		{"unknown output keyset", mustMarshal(t, &unknownOut), voucher.ErrUnknownKeyset},
		{"output without key", mustMarshal(t, &noKey), voucher.ErrDenomination},
		{"blinded message out of range", mustMarshal(t, &outOfRange), voucher.ErrBadRequest},
		{"duplicate input", dupRaw, voucher.ErrMalformed},
		{"inputs 0", withCount(1+voucher.SwapIDSize, 0), voucher.ErrMalformed},
		{"inputs 65", withCount(1+voucher.SwapIDSize, 65), voucher.ErrMalformed},
		{"outputs 0", withCount(outCount, 0), voucher.ErrMalformed},
		{"outputs 65", withCount(outCount, 65), voucher.ErrMalformed},
		{"trailing byte", append(bytes.Clone(okRaw), 0), voucher.ErrMalformed},
		{"truncated", okRaw[:len(okRaw)-1], voucher.ErrMalformed},
	}
	for _, tc := range tests {
		if _, err := call(t, m, peer.ID("mallory-"+tc.name), tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	unspent(t, m, ks, vs...)
	if signed, _ := m.SwapCounts(); signed != 0 || m.swapsStored.Load() != 0 {
		t.Fatalf("refused swaps signed %d, stored %d", signed, m.swapsStored.Load())
	}
	// The honest request still goes through.
	if _, err := call(t, m, alice, okRaw); err != nil {
		t.Fatalf("honest swap after the refusals: %v", err)
	}
}

// TestSwapKeysetWindows: outputs only under a keyset that mints now;
// inputs of a keyset in its grace period still swap, into the new
// keyset; inputs past their keyset's redemption window are refused as
// expired.
func TestSwapKeysetWindows(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	old, vs := buyVouchers(t, f, m, 2, 1, 1)
	f.clk.Advance(25 * time.Hour) // old stops minting at 24 h, redeems until 30 h
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	cur := m.current(f.clk.Now()).Public()
	if cur.ID() == old.ID() {
		t.Fatal("no new keyset")
	}
	_, toOld := swapOf(t, old, vs[:1], 2)
	if _, err := call(t, m, alice, mustMarshal(t, &toOld)); !errors.Is(err, voucher.ErrExpired) {
		t.Fatalf("outputs under a keyset past minting: %v, want ErrExpired", err)
	}
	_, toCur := swapOf(t, cur, vs[:1], 2)
	if _, err := call(t, m, alice, mustMarshal(t, &toCur)); err != nil {
		t.Fatalf("grace-period input into the current keyset: %v", err)
	}
	f.clk.Advance(6 * time.Hour) // old past redeem_until (not yet dropped by Rotate)
	_, late := swapOf(t, cur, vs[1:], 1, 1)
	if _, err := call(t, m, alice, mustMarshal(t, &late)); !errors.Is(err, voucher.ErrExpired) {
		t.Fatalf("input past its redemption window: %v, want ErrExpired", err)
	}
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, m, alice, mustMarshal(t, &late)); !errors.Is(err, voucher.ErrUnknownKeyset) {
		t.Fatalf("input of a dropped keyset: %v, want ErrUnknownKeyset", err)
	}
	if n, err := m.pruneSwaps(f.clk.Now()); err != nil || n != 1 || m.swapsStored.Load() != 0 {
		t.Fatalf("pruned %d swaps, %v; %d left", n, err, m.swapsStored.Load())
	}
}

// TestSwapFlood: one peer (or circuit) gets at most MaxOpenQuotesPerPeer
// swaps per SwapHold, sharing the open-quote table with quotes: a refused
// swap is answered busy before any signature is checked or made, and
// other peers are still served. The stored answers are capped too.
func TestSwapFlood(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cfg.MaxSwapRecords = 6
	m := f.open(t)
	ks, vs := buyVouchers(t, f, m, 1, 1, 1, 1, 1, 1, 1, 1)
	mallory := peer.ID("mallory")
	for i := range 4 {
		_, r := swapOf(t, ks, vs[i:i+1], 1)
		if _, err := call(t, m, mallory, mustMarshal(t, &r)); err != nil {
			t.Fatalf("swap %d: %v", i, err)
		}
	}
	_, fifth := swapOf(t, ks, vs[4:5], 1)
	if _, err := call(t, m, mallory, mustMarshal(t, &fifth)); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("fifth swap of one peer: %v, want ErrBusy", err)
	}
	unspent(t, m, ks, vs[4])
	if signed, _ := m.SwapCounts(); signed != 4 {
		t.Fatalf("%d swaps signed, want 4", signed)
	}
	_, bob := swapOf(t, ks, vs[5:6], 1)
	if _, err := call(t, m, peer.ID("bob"), mustMarshal(t, &bob)); err != nil {
		t.Fatalf("another peer: %v", err)
	}
	f.clk.Advance(time.Minute) // SwapHold
	if _, err := call(t, m, mallory, mustMarshal(t, &fifth)); err != nil {
		t.Fatalf("after SwapHold: %v", err)
	}
	_, seventh := swapOf(t, ks, vs[6:7], 1)
	if _, err := call(t, m, peer.ID("carol"), mustMarshal(t, &seventh)); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("swap beyond MaxSwapRecords: %v, want ErrBusy", err)
	}
	unspent(t, m, ks, vs[6])
}

// TestSwapCrashAfterSignBeforeStore: the mint signs a swap, then dies
// before storing it: nothing was spent or sent, and the retry after a
// restart is signed and stored once.
func TestSwapCrashAfterSignBeforeStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.open(t)
	ks, vs := buyVouchers(t, f, m, 2, 1)
	_, r := swapOf(t, ks, vs, 1, 1, 1)
	raw := mustMarshal(t, &r)
	m.afterSwapSign = func() error { return errors.New("crash") }
	if _, err := call(t, m, alice, raw); !errors.Is(err, voucher.ErrUnavailable) {
		t.Fatalf("crashed swap: %v", err)
	}
	unspent(t, m, ks, vs...)
	m.Stop()
	m = f.open(t)
	resp, err := call(t, m, alice, raw)
	if err != nil {
		t.Fatal(err)
	}
	again, err := call(t, m, alice, raw)
	if signed, replayed := m.SwapCounts(); err != nil || !bytes.Equal(again, resp) || signed != 1 || replayed != 1 {
		t.Fatalf("retry: %v, same=%v, signed %d, replayed %d", err, bytes.Equal(again, resp), signed, replayed)
	}
}

// TestSwapThroughCircuit: swaps on streams through circuits (ServeConn)
// are served like any other, and capped per circuit session: a fifth
// swap on one session within SwapHold is busy, another session's is not.
func TestSwapThroughCircuit(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	m := f.open(t)
	ks, vs := buyVouchers(t, f, m, 1, 1, 1, 1, 1, 1)
	ask := func(s [SessionLen]byte, v voucher.Voucher) error {
		t.Helper()
		_, r := swapOf(t, ks, []voucher.Voucher{v}, 1)
		resp, err := connCall(ctx, t, m, s, frame(mustMarshal(t, &r)))
		if err != nil {
			t.Fatal(err)
		}
		if err := connErr(t, resp); err != nil {
			return err
		}
		if _, err := voucher.ParseSwapResponse(resp); err != nil {
			t.Fatal(err)
		}
		return nil
	}
	for i := range 4 {
		if err := ask(session(1), vs[i]); err != nil {
			t.Fatalf("swap %d through a circuit: %v", i, err)
		}
	}
	if err := ask(session(1), vs[4]); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("fifth swap on one circuit: %v, want ErrBusy", err)
	}
	if err := ask(session(2), vs[5]); err != nil {
		t.Fatalf("another circuit: %v", err)
	}
	if c, err := m.Redeem(ctx, vs[:4]); c != 0 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("swapped vouchers redeem for %d, %v", c, err)
	}
	unspent(t, m, ks, vs[4])
}

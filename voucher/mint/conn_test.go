package mint

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
)

// session returns a circuit session cookie for tests.
func session(b byte) [SessionLen]byte { return [SessionLen]byte{b, 0xc0, 0x0c} }

// frame prefixes msg with its length (VOUCHERS.md §3.1).
func frame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)
}

// pipeStream is one stream through a "circuit": ServeConn runs on one end
// of a net.Pipe, the test holds the other.
type pipeStream struct {
	cli  net.Conn
	done chan struct{} // closed when ServeConn returns
}

func openStream(ctx context.Context, m *Mint, s [SessionLen]byte) *pipeStream {
	srv, cli := net.Pipe()
	p := &pipeStream{cli: cli, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		m.ServeConn(ctx, srv, s, Via{})
	}()
	return p
}

// write writes raw on a goroutine (a pipe write blocks until ServeConn
// reads it all, which it may never do); the result arrives on the channel.
func (p *pipeStream) write(raw []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := p.cli.Write(raw)
		ch <- err
	}()
	return ch
}

// wait closes the client end and waits for the writer and ServeConn.
func (p *pipeStream) wait(ctx context.Context, t *testing.T, wrote <-chan error) {
	t.Helper()
	p.cli.Close()
	for _, ch := range []<-chan struct{}{p.done, chanOf(wrote)} {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("ServeConn did not return")
		}
	}
}

func chanOf(errc <-chan error) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		if errc != nil {
			<-errc
		}
		close(ch)
	}()
	return ch
}

// connCall sends raw on a fresh stream of session s and returns the answer,
// or the read error when ServeConn closed the stream without one.
func connCall(ctx context.Context, t *testing.T, m *Mint, s [SessionLen]byte, raw []byte) ([]byte, error) {
	t.Helper()
	p := openStream(ctx, m, s)
	wrote := p.write(raw)
	resp, err := voucher.ReadMessage(p.cli)
	p.wait(ctx, t, wrote)
	return resp, err
}

// connErr decodes an answer into the refusal's sentinel (nil for a
// non-error answer).
func connErr(t *testing.T, resp []byte) error {
	t.Helper()
	if voucher.MsgType(resp[0]) != voucher.MsgError {
		return nil
	}
	e, err := voucher.ParseErrorResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	return e.Code.Err()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestServeConnBuy: a quote and, once its invoice is paid, the blind
// signatures, each on a stream of its own, as through a circuit.
func TestServeConnBuy(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	m := f.open(t)
	resp, err := connCall(ctx, t, m, session(1), frame(mustMarshal(t, &voucher.QuoteRequest{Amount: 7})))
	if err != nil {
		t.Fatal(err)
	}
	q, err := voucher.ParseQuote(resp)
	if err != nil || q.Amount != 7 || q.Payee != f.ln.PayeeKey {
		t.Fatalf("quote %+v, %v", q, err)
	}
	if _, err := f.ln.PayInvoice(ctx, q.PayReq, 10); err != nil {
		t.Fatal(err)
	}
	ks := m.keysetByID(t, q.Keyset)
	bs, req := blindAll(t, ks, q.ID, []uint64{4, 2, 1})
	// Another circuit (another session) may fetch the signatures: the
	// quote id, not the session, names the purchase.
	resp, err = connCall(ctx, t, m, session(2), frame(mustMarshal(t, &req)))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range finalizeAll(t, ks, bs, resp) {
		if err := ks.Verify(&v, f.clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServeConnBadInput: malformed streams get Error 1 or no answer, and
// none of them holds ServeConn (StreamTimeout is an hour, so waiting for
// the deadline would fail the test).
func TestServeConnBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cfg.StreamTimeout = time.Hour
	m := f.open(t)
	tests := []struct {
		name   string
		raw    []byte
		hangUp bool  // the client closes after writing (no answer to read)
		want   error // the answer's sentinel; nil: no answer at all
	}{
		{"unknown type", frame([]byte{42}), false, voucher.ErrMalformed},
		{"short quote request", frame([]byte{byte(voucher.MsgQuoteRequest), 1}), false, voucher.ErrMalformed},
		{"length 0", []byte{0, 0, 0, 0}, false, nil},
		{"over the size cap", binary.BigEndian.AppendUint32(nil, voucher.MaxMessageSize+1), false, nil},
		{"length 2^32-1", []byte{0xff, 0xff, 0xff, 0xff, 1}, false, nil},
		{"http", []byte("GET / HTTP/1.1\r\nHost: mint\r\n\r\n"), false, nil},
		{"truncated, then closed", []byte{0, 0, 0, 9, 1, 0}, true, nil},
		{"half a length, then closed", []byte{0, 0}, true, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			if tc.hangUp {
				p := openStream(ctx, m, session(byte(i)))
				wrote := p.write(tc.raw)
				if err := <-wrote; err != nil {
					t.Fatal(err)
				}
				p.wait(ctx, t, nil)
				return
			}
			resp, err := connCall(ctx, t, m, session(byte(i)), tc.raw)
			switch {
			case tc.want == nil && err == nil:
				t.Fatalf("answered %x", resp)
			case tc.want != nil && err != nil:
				t.Fatalf("no answer: %v", err)
			case tc.want != nil:
				if got := connErr(t, resp); !errors.Is(got, tc.want) {
					t.Fatalf("answer %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestServeConnSlowLoris: a stream that sends half a length prefix and
// then nothing is closed at StreamTimeout without an answer, and its slot
// is free again.
func TestServeConnSlowLoris(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	f.cfg.StreamTimeout = 50 * time.Millisecond
	f.cfg.MaxCircuitStreams = 1
	m := f.open(t)
	p := openStream(ctx, m, session(1))
	wrote := p.write([]byte{0, 0})
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if resp, err := voucher.ReadMessage(p.cli); err == nil { // ends at the deadline
		t.Fatalf("slow stream answered %x", resp)
	}
	p.wait(ctx, t, nil)
	if n := m.connStreams.Load(); n != 0 { // the only slot is free again
		t.Fatalf("%d streams still counted", n)
	}
}

// TestServeConnEndsEarly: a stream blocked on a silent client ends when the
// mint stops or the caller's ctx ends, long before StreamTimeout.
func TestServeConnEndsEarly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		end  func(m *Mint, cancel context.CancelFunc)
	}{
		{"Stop", func(m *Mint, _ context.CancelFunc) { m.Stop() }},
		{"caller ctx", func(_ *Mint, cancel context.CancelFunc) { cancel() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			f := newFixture(t)
			f.cfg.StreamTimeout = time.Hour
			m := f.open(t)
			reading := make(chan struct{}, 1)
			m.beforeRead = func() { reading <- struct{}{} }
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			p := openStream(sctx, m, session(1))
			select {
			case <-reading:
			case <-ctx.Done():
				t.Fatal("ServeConn never read")
			}
			tc.end(m, cancel)
			select {
			case <-p.done:
			case <-ctx.Done():
				t.Fatal("ServeConn held by a silent client")
			}
			p.wait(ctx, t, nil)
		})
	}
}

// TestServeConnStreamCap: with MaxCircuitStreams silent streams held open,
// the next stream is answered busy without being read; when one of them
// finishes, a new stream is served.
func TestServeConnStreamCap(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	f.cfg.StreamTimeout = time.Hour
	f.cfg.MaxCircuitStreams = 3
	m := f.open(t)
	var reads atomic.Int32
	reading := make(chan struct{}, 8)
	m.beforeRead = func() {
		reads.Add(1)
		reading <- struct{}{}
	}
	var held []*pipeStream
	for i := range 3 {
		held = append(held, openStream(ctx, m, session(byte(i))))
		select {
		case <-reading:
		case <-ctx.Done():
			t.Fatal("held stream never read")
		}
	}
	quote := frame(mustMarshal(t, &voucher.QuoteRequest{Amount: 1}))
	// Many circuits, one stream each: all refused, none read.
	for i := range 20 {
		resp, err := connCall(ctx, t, m, session(byte(100+i)), quote)
		if err != nil {
			t.Fatal(err)
		}
		if err := connErr(t, resp); !errors.Is(err, voucher.ErrBusy) {
			t.Fatalf("stream over the cap: %v, want ErrBusy", err)
		}
	}
	if n := reads.Load(); n != 3 {
		t.Fatalf("%d streams read, want 3", n)
	}
	// One held stream sends its request and is answered; its slot frees.
	wrote := held[0].write(quote)
	resp, err := voucher.ReadMessage(held[0].cli)
	if err != nil || connErr(t, resp) != nil {
		t.Fatalf("held stream: %x, %v", resp, err)
	}
	held[0].wait(ctx, t, wrote)
	p := openStream(ctx, m, session(9))
	select {
	case <-reading:
	case <-ctx.Done():
		t.Fatal("stream after a slot freed was not read")
	}
	wrote = p.write(quote)
	if resp, err := voucher.ReadMessage(p.cli); err != nil || connErr(t, resp) != nil {
		t.Fatalf("after a slot freed: %x, %v", resp, err)
	}
	p.wait(ctx, t, wrote)
	for _, h := range held[1:] {
		h.wait(ctx, t, nil)
	}
	if n := m.connStreams.Load(); n != 0 {
		t.Fatalf("%d streams still counted", n)
	}
}

// TestServeConnOpenQuoteCaps: the per-buyer cap is keyed by the circuit
// session, and the global cap holds against a client that opens a new
// circuit (a new session) for every quote: once every session holds one
// quote, no more invoices are created (each fresh circuit took a slot
// from a session holding two, never more), and a libp2p buyer is refused
// too until quotes expire or have held their slot for QuoteHold.
func TestServeConnOpenQuoteCaps(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	f.cfg.MaxOpenQuotesPerPeer = 2
	f.cfg.MaxOpenQuotes = 5
	var invoices atomic.Int32
	f.cfg.CreateInvoice = func(ctx context.Context, amt int64, memo string, expiry time.Duration) (string, [32]byte, error) {
		invoices.Add(1)
		return f.ln.CreateInvoice(ctx, amt, memo, expiry)
	}
	m := f.open(t)
	quote := frame(mustMarshal(t, &voucher.QuoteRequest{Amount: 1}))
	ask := func(s [SessionLen]byte) error {
		t.Helper()
		resp, err := connCall(ctx, t, m, s, quote)
		if err != nil {
			t.Fatal(err)
		}
		return connErr(t, resp)
	}
	steps := []struct {
		name    string
		session [SessionLen]byte
		want    error
	}{
		{"A 1", session(1), nil},
		{"A 2", session(1), nil},
		{"A over its cap", session(1), voucher.ErrBusy},
		{"B", session(2), nil},
		{"C 1", session(3), nil},
		{"C 2: global cap reached", session(3), nil},
		{"D, a fresh circuit, takes A's oldest slot", session(4), nil},
		{"E, a fresh circuit, takes C's oldest slot", session(5), nil},
		{"A again: every session holds one", session(1), voucher.ErrBusy},
	}
	for _, st := range steps {
		if err := ask(st.session); !errors.Is(err, st.want) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
	}
	for i := range 50 { // a new circuit for every quote
		if err := ask(session(byte(10 + i))); !errors.Is(err, voucher.ErrBusy) {
			t.Fatalf("fresh session %d: %v, want ErrBusy", i, err)
		}
	}
	if _, err := call(t, m, alice, mustMarshal(t, &voucher.QuoteRequest{Amount: 1})); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("libp2p peer at the global cap: %v, want ErrBusy", err)
	}
	if n := invoices.Load(); n != 7 {
		t.Fatalf("%d invoices created, want 7 (5 slots, 2 handed over)", n)
	}
	f.clk.Advance(11 * time.Minute) // every open quote's invoice expired
	if err := ask(session(4)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestServeConnOpenQuoteFairShare: a client that fills every open-quote
// slot with a few free (mint-only) circuits, each at its per-circuit cap,
// no longer blocks purchases: an honest buyer's quote takes the oldest
// slot of the circuit holding the most. When the slots are spread one per
// circuit, a new buyer waits only until the oldest quote has held its
// slot for QuoteHold, not for its invoice's 10 minutes; and a quote that
// lost its slot is still paid and minted.
func TestServeConnOpenQuoteFairShare(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	f.cfg.MaxOpenQuotesPerPeer = 4
	f.cfg.MaxOpenQuotes = 8
	m := f.open(t)
	quote := frame(mustMarshal(t, &voucher.QuoteRequest{Amount: 3}))
	ask := func(s [SessionLen]byte) (voucher.Quote, error) {
		t.Helper()
		resp, err := connCall(ctx, t, m, s, quote)
		if err != nil {
			t.Fatal(err)
		}
		if err := connErr(t, resp); err != nil {
			return voucher.Quote{}, err
		}
		q, err := voucher.ParseQuote(resp)
		if err != nil {
			t.Fatal(err)
		}
		return q, nil
	}
	// The attacker: two circuits, four quotes each, fill all 8 slots.
	var first voucher.Quote
	for i := range 4 {
		for _, s := range []byte{1, 2} {
			q, err := ask(session(s))
			if err != nil {
				t.Fatalf("attacker quote %d on circuit %d: %v", i, s, err)
			}
			if i == 0 && s == 1 {
				first = q
			}
		}
	}
	if _, err := ask(session(1)); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("attacker over its per-circuit cap: %v, want ErrBusy", err)
	}
	// An honest buyer still gets a quote at once.
	if _, err := ask(session(100)); err != nil {
		t.Fatalf("honest buyer while two circuits hold every slot: %v", err)
	}
	// The attacker's quote that lost its slot is still a valid purchase.
	if _, err := f.ln.PayInvoice(ctx, first.PayReq, 10); err != nil {
		t.Fatal(err)
	}
	ks := m.keysetByID(t, first.Keyset)
	bs, req := blindAll(t, ks, first.ID, []uint64{2, 1})
	resp, err := connCall(ctx, t, m, session(1), frame(mustMarshal(t, &req)))
	if err != nil {
		t.Fatal(err)
	}
	if len(finalizeAll(t, ks, bs, resp)) != 2 {
		t.Fatal("quote that lost its slot was not minted")
	}

	// Slots spread one per circuit: a new buyer is refused until the
	// oldest quote has held its slot for QuoteHold.
	g := newFixture(t)
	g.cfg.MaxOpenQuotesPerPeer = 4
	g.cfg.MaxOpenQuotes = 8
	m = g.open(t)
	for s := range byte(8) {
		if _, err := ask(session(10 + s)); err != nil {
			t.Fatalf("circuit %d: %v", s, err)
		}
		g.clk.Advance(time.Second)
	}
	if _, err := ask(session(100)); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("new buyer with every circuit at one quote: %v, want ErrBusy", err)
	}
	g.clk.Advance(2*time.Minute - 8*time.Second)
	if _, err := ask(session(100)); err != nil {
		t.Fatalf("new buyer after the oldest quote held its slot for QuoteHold: %v", err)
	}
	if _, err := ask(session(101)); !errors.Is(err, voucher.ErrBusy) {
		t.Fatalf("second new buyer before the next quote's QuoteHold: %v, want ErrBusy", err)
	}
}

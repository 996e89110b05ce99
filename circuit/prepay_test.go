package circuit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testPrepay is a paid hop's Prepay hook for tests: the batch "good" pays,
// a mint-only request is granted, anything else is refused with the ack
// "bad". It records the cookies it accepted and which SessionClosed ended.
type testPrepay struct {
	mu     sync.Mutex
	open   map[[cell.CookieLen]byte]bool
	closed int
}

func newTestPrepay() *testPrepay { return &testPrepay{open: make(map[[cell.CookieLen]byte]bool)} }

func (p *testPrepay) prepay(_ context.Context, cookie [cell.CookieLen]byte, _ peer.ID, off cell.Offer) (cell.AnswerStatus, []byte) {
	switch {
	case off.Kind == cell.OfferMintOnly:
	case off.Kind == cell.OfferVouchers && string(off.Batch) == "good":
	default:
		return cell.AnswerRefused, []byte("bad")
	}
	p.mu.Lock()
	p.open[cookie] = true
	p.mu.Unlock()
	if off.Kind == cell.OfferMintOnly {
		return cell.AnswerMintOnly, nil
	}
	return cell.AnswerPaid, []byte("ok")
}

func (p *testPrepay) sessionClosed(cookie [cell.CookieLen]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[cookie] {
		delete(p.open, cookie)
		p.closed++
	}
}

// paid makes engines idx of a testNet paid hops with their own testPrepay.
func paid(pp map[int]*testPrepay, idx ...int) func(int, *Config) {
	return func(i int, cfg *Config) {
		for _, j := range idx {
			if i == j {
				p := newTestPrepay()
				pp[i] = p
				cfg.Prepay = func(ctx context.Context, cookie [cell.CookieLen]byte, from peer.ID, off cell.Offer) (cell.AnswerStatus, []byte) {
					return p.prepay(ctx, cookie, from, off)
				}
				cfg.SessionClosed = p.sessionClosed
			}
		}
	}
}

// offer is a client Prepay offering batch (or a mint-only request when
// batch is nil) that records Done's outcome.
type offer struct {
	batch    []byte
	mu       sync.Mutex
	calls    int
	answered bool
	ans      cell.Answer
}

func (o *offer) prepay() *Prepay {
	return &Prepay{
		Offer: func(context.Context) (cell.Offer, error) {
			if o.batch == nil {
				return cell.Offer{Kind: cell.OfferMintOnly}, nil
			}
			return cell.Offer{Kind: cell.OfferVouchers, Batch: o.batch}, nil
		},
		Done: func(a cell.Answer, answered bool) error {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.calls++
			o.answered, o.ans = answered, a
			return nil
		},
	}
}

func (o *offer) outcome() (int, bool, cell.Answer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls, o.answered, o.ans
}

// A paid hop refuses a CREATE (and an EXTEND's CREATE) that offers
// nothing with DESTROY reason payment, and a bad offer with CREATED
// carrying its refusal; a paid circuit builds and carries traffic.
func TestPaidHopHandshake(t *testing.T) {
	t.Parallel()
	pp := map[int]*testPrepay{}
	tn := newTestNet(t, 4, paid(pp, 1, 2))
	ctx := testCtx(t)
	srv := newTCPServer(t, echo)

	t.Run("no offer at the first hop", func(t *testing.T) {
		_, err := tn.engines[0].Build(ctx, tn.path(1, 3))
		var ce *CloseError
		if !errors.Is(err, ErrPayment) || !errors.As(err, &ce) || ce.Reason != cell.ReasonPayment {
			t.Fatalf("build = %v, want a close for payment", err)
		}
	})
	t.Run("no offer at a later hop", func(t *testing.T) {
		p := tn.path(3, 1)
		_, err := tn.engines[0].Build(ctx, p)
		var be *BuildError
		if !errors.Is(err, ErrPayment) || !errors.As(err, &be) || be.Hop != 1 {
			t.Fatalf("build = %v, want hop 2 refused for payment", err)
		}
	})
	t.Run("bad offer", func(t *testing.T) {
		o := &offer{batch: []byte("forged")}
		p := tn.path(1)
		p[0].Prepay = o.prepay()
		_, err := tn.engines[0].Build(ctx, p)
		var re *RefusedError
		if !errors.As(err, &re) || !errors.Is(err, ErrPayment) || string(re.Ack) != "bad" {
			t.Fatalf("build = %v, want RefusedError with ack bad", err)
		}
		if calls, answered, ans := o.outcome(); calls != 1 || !answered || !ans.Paid || ans.Status != cell.AnswerRefused {
			t.Fatalf("Done: %d calls, answered %v, %+v", calls, answered, ans)
		}
	})
	t.Run("paid circuit", func(t *testing.T) {
		o1, o2 := &offer{batch: []byte("good")}, &offer{batch: []byte("good")}
		p := tn.path(1, 2, 3)
		p[0].Prepay, p[1].Prepay = o1.prepay(), o2.prepay()
		c, err := tn.engines[0].Build(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, o := range []*offer{o1, o2} {
			if calls, answered, ans := o.outcome(); calls != 1 || !answered || ans.Status != cell.AnswerPaid || string(ans.Ack) != "ok" {
				t.Fatalf("Done: %d calls, answered %v, %+v", calls, answered, ans)
			}
		}
		s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		msg := bytes.Repeat([]byte("paid"), 10000)
		go func() { _, _ = s.Write(msg) }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo: %v", err)
		}
	})
	if n := tn.engines[1].Stats().CreatesUnpaid; n < 2 {
		t.Fatalf("hop 1 counted %d unpaid CREATEs, want at least 2", n)
	}
}

// A mint-only circuit carries BEGIN for the mint service only: an EXTEND
// through it and an exit BEGIN on it are refused (the circuit is destroyed
// for payment), and it carries at most MintOnlyMaxCells cells.
func TestMintOnlyCircuit(t *testing.T) {
	t.Parallel()
	pp := map[int]*testPrepay{}
	srv := newTCPServer(t, echo)
	mintBegin := func(ctx context.Context, req BeginRequest) (net.Conn, error) {
		if req.Service != cell.ServiceMint {
			return loopbackBegin(ctx, req)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.ln.Addr().String())
	}
	tn := newTestNet(t, 3, func(i int, cfg *Config) {
		paid(pp, 1)(i, cfg)
		cfg.Begin = mintBegin
		cfg.Limits.MintOnlyMaxCells = 32
	})
	ctx := testCtx(t)
	mintTarget, err := cell.ParseTarget(cell.MintTarget)
	if err != nil {
		t.Fatal(err)
	}
	build := func(idx ...int) (*Circuit, error) {
		p := tn.path(idx...)
		p[len(p)-1].Prepay = (&offer{}).prepay()
		return tn.engines[0].Build(ctx, p)
	}

	t.Run("extend refused", func(t *testing.T) {
		p := tn.path(1, 2)
		p[0].Prepay = (&offer{}).prepay()
		_, err := tn.engines[0].Build(ctx, p)
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Reason != cell.ReasonPayment || ce.Depth != 1 {
			t.Fatalf("build through a mint-only hop = %v, want hop 1 closing for payment", err)
		}
	})
	t.Run("exit begin refused", func(t *testing.T) {
		c, err := build(1)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Dial(ctx, cell.ServiceExit, srv.addr()); err == nil {
			t.Fatal("exit BEGIN on a mint-only circuit succeeded")
		}
		<-c.Done()
		var ce *CloseError
		if !errors.As(c.Err(), &ce) || ce.Reason != cell.ReasonPayment {
			t.Fatalf("circuit closed with %v, want payment", c.Err())
		}
	})
	t.Run("mint begin served, byte cap", func(t *testing.T) {
		c, err := build(1)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := c.Dial(ctx, cell.ServiceMint, mintTarget)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		msg := []byte("quote please")
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("mint echo: %v", err)
		}
		// Past the cap (32 cells both ways), the hop destroys the circuit.
		big := bytes.Repeat([]byte{1}, 64*cell.Size)
		go func() { _, _ = s.Write(big) }()
		_, _ = io.Copy(io.Discard, s)
		<-c.Done()
		var ce *CloseError
		if !errors.As(c.Err(), &ce) || ce.Reason != cell.ReasonPayment {
			t.Fatalf("circuit closed with %v, want payment", c.Err())
		}
	})
	// Every session the hook opened is closed once its circuit is gone.
	waitFor(ctx, t, "mint-only sessions closed", func() bool {
		pp[1].mu.Lock()
		defer pp[1].mu.Unlock()
		return len(pp[1].open) == 0 && pp[1].closed >= 2
	})
}

// A neighbour that floods CREATEs is refused by its token bucket before
// any public-key work (DESTROY reason resource limit), and another
// client's paid circuit through the same relay still builds.
func TestCreateFloodRateLimited(t *testing.T) {
	t.Parallel()
	const burst, flood = 8, 200
	pp := map[int]*testPrepay{}
	tn := newTestNet(t, 4, func(i int, cfg *Config) {
		paid(pp, 1)(i, cfg)
		if i == 1 {
			cfg.Limits.CreatesPerPeerPerSecond = 0.001 // no refill within the test
			cfg.Limits.CreateBurstPerPeer = burst
		}
	})
	ctx := testCtx(t)
	n := dialNeighbour(t, tn.hosts[3], tn.hosts[1])
	_, msg1, err := startHandshake(tn.keys[1].Public(), nil) // offers nothing
	if err != nil {
		t.Fatal(err)
	}
	var c cell.Cell
	go func() {
		var out cell.Cell
		for id := cell.CircID(1); id <= flood; id++ {
			out.Reset()
			out.SetCircID(id)
			out.SetCommand(cell.CmdCreate)
			if err := (&cell.Create{Depth: 1, Handshake: msg1}).MarshalBody(out.Body()); err != nil {
				return
			}
			if n.send(&out) != nil {
				return
			}
		}
	}()
	reasons := map[cell.Reason]int{}
	for range flood {
		if err := n.recv(&c); err != nil {
			t.Fatal(err)
		}
		if c.Command() != cell.CmdDestroy {
			t.Fatalf("flooded CREATE answered %v", c.Command())
		}
		reasons[parseDestroy(&c)]++
	}
	if reasons[cell.ReasonPayment] != burst || reasons[cell.ReasonResource] != flood-burst {
		t.Fatalf("DESTROY reasons %v, want %d payment and %d resource limit", reasons, burst, flood-burst)
	}
	if st := tn.engines[1].Stats(); st.CreatesRateLimited != flood-burst || st.CreatesUnpaid != burst {
		t.Fatalf("stats: %d rate-limited, %d unpaid", st.CreatesRateLimited, st.CreatesUnpaid)
	}
	// Another client, another neighbour: its bucket is its own.
	o := &offer{batch: []byte("good")}
	p := tn.path(1, 2)
	p[0].Prepay = o.prepay()
	circ, err := tn.engines[0].Build(ctx, p)
	if err != nil {
		t.Fatalf("paid circuit after the flood: %v", err)
	}
	circ.Close()
}

package mempool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// fakeNet is a set of in-process delivery Servers sharing one fake
// backend mempool; Dial connects to one of them through net.Pipe.
type fakeNet struct {
	t       *testing.T
	servers []*Server
	names   []string
	wg      sync.WaitGroup

	mu       sync.Mutex
	pool     map[[32]byte]bool // guarded by mu
	reject   *Verdict          // guarded by mu: every Submit answers this
	down     bool              // guarded by mu: Dial fails
	dials    []Avoid           // guarded by mu
	queriedB []string          // guarded by mu: nodes that got a QUERY
}

func newFakeNet(t *testing.T, n int) *fakeNet {
	f := &fakeNet{t: t, pool: map[[32]byte]bool{}}
	for i := range n {
		name := fmt.Sprintf("node%d", i)
		s, err := NewServer(ServerConfig{
			Submit: func(_ context.Context, s Submit) Verdict {
				f.mu.Lock()
				defer f.mu.Unlock()
				if f.reject != nil {
					return *f.reject
				}
				c, err := CheckRawTx(s.Tx)
				if err != nil {
					return Verdict{Status: Rejected, Code: CodeDecode, Message: "decode"}
				}
				f.pool[c.Hash] = true
				return Verdict{Status: Accepted}
			},
			Lookup: func(_ context.Context, id [32]byte) TxState {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.queriedB = append(f.queriedB, name)
				if f.pool[id] {
					return StateMempool
				}
				return StateUnknown
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		f.servers = append(f.servers, s)
		f.names = append(f.names, name)
	}
	t.Cleanup(f.wg.Wait)
	return f
}

func (f *fakeNet) dial(ctx context.Context, a Avoid) (Delivery, error) {
	f.mu.Lock()
	f.dials = append(f.dials, a)
	down := f.down
	f.mu.Unlock()
	if down {
		return Delivery{}, fmt.Errorf("dial: %w", ErrNoDeliveryNode)
	}
	for i, name := range f.names {
		if slices.Contains(a.Nodes, name) || slices.Contains(a.Networks, "net-"+name) {
			continue
		}
		ours, theirs := net.Pipe()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.servers[i].ServeConn(context.Background(), theirs, Origin{Peer: "prev-hop"})
		}()
		return Delivery{Conn: ours, Node: name, Network: "net-" + name}, nil
	}
	return Delivery{}, fmt.Errorf("dial: %w", ErrNoDeliveryNode)
}

func newTestClient(t *testing.T, path string, f *fakeNet) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{
		Dial: f.dial, OutboxPath: path,
		VerdictWait: 2 * time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		EchoDelay: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pollUntil calls done every 5 ms until it reports true, failing the test
// with what after 10 s.
func pollUntil(t *testing.T, done func() (bool, error), what func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := done()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal(what())
		case <-tick.C:
		}
	}
}

func waitEmpty(t *testing.T, c *Client) {
	t.Helper()
	var es []Entry
	pollUntil(t, func() (bool, error) {
		var err error
		es, err = c.Queued()
		return len(es) == 0, err
	}, func() string { return fmt.Sprintf("outbox still holds %+v", es) })
}

func TestBroadcastDeliversAndEchoes(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 3)
	c := newTestClient(t, filepath.Join(t.TempDir(), "outbox.db"), f)
	h, want := testTx(t, 7, true)
	got, err := c.Broadcast(context.Background(), h, nil)
	if err != nil || got != want {
		t.Fatalf("Broadcast = %q, %v; want %q", got, err, want)
	}
	waitEmpty(t, c)
	if st := c.Stats(); st.Delivered != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Two SUBMITs (different nodes and networks), then the QUERY went to
	// the third node, which took no copy.
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dials) < 3 || len(f.dials[1].Nodes) != 1 || len(f.dials[1].Networks) != 1 {
		t.Fatalf("dials %+v", f.dials)
	}
	if !slices.Equal(f.queriedB, []string{"node2"}) {
		t.Fatalf("echo asked %v, want node2", f.queriedB)
	}
	var subs uint64
	for _, s := range f.servers {
		subs += s.Stats().Submits
	}
	if subs != 2 {
		t.Fatalf("%d submits, want 2", subs)
	}
}

func TestBroadcastRejected(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 2)
	f.reject = &Verdict{Status: Rejected, Code: CodeVerify, Message: "bad-txns-inputs-missingorspent"}
	c := newTestClient(t, filepath.Join(t.TempDir(), "outbox.db"), f)
	h, _ := testTx(t, 1, false)
	_, err := c.Broadcast(context.Background(), h, nil)
	var e *Error
	if !errors.As(err, &e) || e.RPCCode() != CodeVerify || e.Message != "bad-txns-inputs-missingorspent" {
		t.Fatalf("got %v, want -25", err)
	}
	if es, _ := c.Queued(); len(es) != 0 {
		t.Fatalf("rejected tx still queued: %+v", es)
	}
	if _, err := c.Broadcast(context.Background(), "zz", nil); !errors.As(err, &e) || e.Code != CodeDecode {
		t.Fatalf("bad hex: %v", err)
	}
}

// A transaction queued while no delivery node is reachable survives a
// restart and is delivered once by the next run.
func TestOutboxSurvivesRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	f := newFakeNet(t, 3)
	f.down = true
	c1, err := NewClient(ClientConfig{Dial: f.dial, OutboxPath: path, VerdictWait: 50 * time.Millisecond, RetryMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Start(); err != nil {
		t.Fatal(err)
	}
	h, want := testTx(t, 2, true)
	got, err := c1.Broadcast(context.Background(), h, nil)
	if err != nil || got != want {
		t.Fatalf("Broadcast = %q, %v", got, err)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	c2 := newTestClient(t, path, f)
	waitEmpty(t, c2)
	var id chainhash.Hash
	if err := chainhash.Decode(&id, want); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	in := f.pool[id]
	f.mu.Unlock()
	if !in {
		t.Fatal("not delivered after restart")
	}
	var subs uint64
	for _, s := range f.servers {
		subs += s.Stats().Submits
	}
	if subs != 2 {
		t.Fatalf("%d submits after restart, want 2 (one round)", subs)
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 2)
	f.down = true
	c, err := NewClient(ClientConfig{Dial: f.dial, OutboxPath: filepath.Join(t.TempDir(), "o.db"), VerdictWait: time.Millisecond, RetryMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, id := testTx(t, 3, false)
	if _, err := c.Broadcast(context.Background(), h, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(id); err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(id); !errors.Is(err, ErrUnknownTx) {
		t.Fatalf("second abort: %v", err)
	}
}

// A transaction that cannot be written to the outbox is never sent, even
// though the fast path opens its stream while the write runs.
func TestOutboxFullSendsNothing(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 3)
	f.down = true
	c, err := NewClient(ClientConfig{Dial: f.dial, OutboxPath: filepath.Join(t.TempDir(), "o.db"), MaxQueued: 1, VerdictWait: time.Millisecond, RetryMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h1, _ := testTx(t, 10, false)
	if _, err := c.Broadcast(context.Background(), h1, nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	h2, _ := testTx(t, 11, false)
	var e *Error
	if _, err := c.Broadcast(context.Background(), h2, nil); !errors.As(err, &e) || e.Code != CodeMisc {
		t.Fatalf("full outbox: %v", err)
	}
	c.Close() // waits for the round
	for _, s := range f.servers {
		if n := s.Stats().Submits; n != 0 {
			t.Fatalf("a delivery node got %d SUBMITs of a transaction not on disk", n)
		}
	}
}

// TestAbortByWTxID: abortprivatebroadcast takes a txid or a wtxid; a
// witness transaction is found by either and removed once.
func TestAbortByWTxID(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 2)
	f.down = true
	c, err := NewClient(ClientConfig{Dial: f.dial, OutboxPath: filepath.Join(t.TempDir(), "o.db"), VerdictWait: time.Millisecond, RetryMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, id := testTx(t, 4, true)
	ck, err := CheckTx(h)
	if err != nil {
		t.Fatal(err)
	}
	if ck.WTxID == id {
		t.Fatal("a witness transaction's wtxid equals its txid")
	}
	if _, err := c.Broadcast(context.Background(), h, nil); err != nil {
		t.Fatal(err)
	}
	e, err := c.AbortID(ck.WTxID)
	if err != nil || e.TxID != id {
		t.Fatalf("abort by wtxid: %+v %v", e.TxID, err)
	}
	if _, err := c.AbortID(id); !errors.Is(err, ErrUnknownTx) {
		t.Fatalf("abort after removal: %v", err)
	}
}

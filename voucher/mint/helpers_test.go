package mint

import (
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/internal/lnfake"
	"github.com/co-infuse/co-infuse/voucher/internal/testkeys"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var testAmounts = []uint64{1, 2, 4, 8, 16}

// pool hands out RSA keys generated once per test binary.
var pool = testkeys.Pool{N: len(testAmounts)} // test fixture

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	clk  *clock
	ln   *lnfake.Network
	path string
	cfg  Config
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{clk: newClock(), path: filepath.Join(t.TempDir(), "mint.db")}
	f.ln = lnfake.New([33]byte{2, 0xaa, 0xbb}, f.clk.Now)
	f.cfg = Config{
		Path:           f.path,
		CreateInvoice:  f.ln.CreateInvoice,
		InvoiceSettled: f.ln.InvoiceSettled,
		Payee:          f.ln.PayeeKey,
		PriceMsatPerMB: 2000,
		Denominations:  testAmounts,
		KeyGen:         pool.Gen,
		KeysetLifetime: 24 * time.Hour,
		Grace:          6 * time.Hour,
		Now:            f.clk.Now,
		Logger:         quiet,
	}
	return f
}

func (f *fixture) open(t testing.TB) *Mint {
	t.Helper()
	m, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	return m
}

// blindAll blinds fresh seeds for amounts under ks.
func blindAll(t *testing.T, ks *voucher.Keyset, quote [voucher.QuoteIDSize]byte, amounts []uint64) ([]*voucher.Blinded, voucher.MintRequest) {
	t.Helper()
	req := voucher.MintRequest{Quote: quote, Keyset: ks.ID()}
	var bs []*voucher.Blinded
	for _, a := range amounts {
		var seed voucher.Seed
		rand.Read(seed[:])
		key, ok := ks.Key(a)
		if !ok {
			t.Fatalf("no key for %d", a)
		}
		b, err := voucher.Blind(seed, a, key)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
		req.Blinded = append(req.Blinded, voucher.BlindedMsg{Amount: a, Msg: b.Msg})
	}
	return bs, req
}

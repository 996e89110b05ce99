package wallet

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/internal/lnfake"
	"github.com/co-infuse/co-infuse/voucher/internal/testkeys"
	"github.com/co-infuse/co-infuse/voucher/mint"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var testAmounts = []uint64{1, 2, 4, 8, 16}

// pool hands out RSA keys generated once per test binary.
var pool = testkeys.Pool{N: len(testAmounts)} // test fixture

type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// env is a mint node and a client on loopback, sharing a fake Lightning
// network.
type env struct {
	clk        *clock
	ln         *lnfake.Network
	mint       *mint.Mint
	mintHost   host.Host
	clientHost host.Host
	node       peer.ID
	dir        string
	wcfg       Config
	mcfg       mint.Config
	price      uint64
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvAt(t, 0) }

// newEnvAt starts the clock offset later: with the shared key pool, a
// different start time is what gives a node a keyset of its own.
func newEnvAt(t *testing.T, offset time.Duration) *env {
	t.Helper()
	return newEnvWith(t, offset, nil)
}

// newEnvWith is newEnvAt with the mint's config edited by tweak (if
// non-nil) before the mint starts. The default test mint rotates daily to
// keep clock jumps short; the wallet's MinMintWindow is lowered to match
// unless tweak makes the keysets mint for long enough.
func newEnvWith(t *testing.T, offset time.Duration, tweak func(*mint.Config)) *env {
	t.Helper()
	e := &env{clk: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(offset)}, dir: t.TempDir(), price: 2000}
	e.ln = lnfake.New([33]byte{3, 0x11, 0x22}, e.clk.Now)
	e.mintHost = newHost(t)
	e.clientHost = newHost(t)
	e.node = e.mintHost.ID()
	e.mcfg = mint.Config{
		Host:           e.mintHost,
		Path:           filepath.Join(e.dir, "mint.db"),
		CreateInvoice:  e.ln.CreateInvoice,
		InvoiceSettled: e.ln.InvoiceSettled,
		Payee:          e.ln.PayeeKey,
		PriceMsatPerMB: e.price,
		Denominations:  testAmounts,
		KeyGen:         pool.Gen,
		KeysetLifetime: 24 * time.Hour,
		Grace:          6 * time.Hour,
		Now:            e.clk.Now,
		Logger:         quiet,
	}
	if tweak != nil {
		tweak(&e.mcfg)
	}
	e.startMint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clientHost.Connect(ctx, peer.AddrInfo{ID: e.node, Addrs: e.mintHost.Addrs()}); err != nil {
		t.Fatal(err)
	}
	e.wcfg = Config{
		Host: e.clientHost,
		Path: filepath.Join(e.dir, "wallet.db"),
		DecodeInvoice: func(ctx context.Context, payReq string) (Invoice, error) {
			inv, err := e.ln.DecodeInvoice(ctx, payReq)
			return Invoice(inv), err
		},
		PayInvoice: e.ln.PayInvoice,
		Published: func(ctx context.Context, node peer.ID) (Published, error) {
			return Published{Payee: e.ln.PayeeHex(), Keysets: e.mint.Keysets(), PriceMsatPerMB: e.price}, nil
		},
		DailyBudgetSat:   200,
		MinFeeLimitSat:   1, // fee limit 1 sat for small test amounts
		TargetBalanceSat: 20,
		Now:              e.clk.Now,
		SettleWait:       5 * time.Second,
		Logger:           quiet,
	}
	if e.mcfg.KeysetLifetime < DefaultMinMintWindow {
		e.wcfg.MinMintWindow = e.mcfg.KeysetLifetime
	}
	return e
}

// startMint opens the mint's store (again) and serves the protocol.
func (e *env) startMint(t *testing.T) {
	t.Helper()
	m, err := mint.New(e.mcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	e.mint = m
}

func (e *env) wallet(t *testing.T) *Wallet {
	t.Helper()
	w, err := New(e.wcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	return w
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sum(vs []voucher.Voucher) uint64 {
	var s uint64
	for _, v := range vs {
		s += v.Amount
	}
	return s
}

package mint

import (
	"context"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/host"
)

// Config configures a Mint. Zero durations and sizes take the defaults
// given on each field.
type Config struct {
	// Host serves /co-infuse/mint/1. Nil means no protocol handler (a
	// redeem-only mint).
	Host host.Host
	// Path is the mint's bbolt database (created 0600): keysets with their
	// private keys, quotes, the spent set. Required.
	Path string

	// CreateInvoice creates an invoice on the node's own LND for amtSat
	// sats that expires after expiry. Required with Host.
	CreateInvoice func(ctx context.Context, amtSat int64, memo string, expiry time.Duration) (payReq string, payHash [32]byte, err error)
	// InvoiceSettled reports whether the invoice with payHash is settled.
	// Required with Host.
	InvoiceSettled func(ctx context.Context, payHash [32]byte) (settled bool, err error)
	// Payee is the node's LND public key (33-byte compressed), the payee the
	// client must see in every invoice. Required with Host.
	Payee [voucher.PayeeSize]byte
	// PriceMsatPerMB is the node's service price, quoted so the client can
	// check it against its limit. Default 0.
	PriceMsatPerMB uint64

	// Denominations are the keyset's amounts in sats, powers of two.
	// Default 1, 2, 4, …, 1024.
	Denominations []uint64
	// KeyBits is the RSA key size. Default 2048; 2048..4096.
	KeyBits int
	// KeyGen makes one RSA key. Default rsa.GenerateKey with crypto/rand.
	KeyGen func(bits int) (*rsa.PrivateKey, error)
	// KeysetLifetime is a keyset's minting window. Default 30 days.
	KeysetLifetime time.Duration
	// Grace is how long a keyset still redeems after its minting window.
	// Default 7 days.
	Grace time.Duration

	// InvoiceExpiry is the expiry of each quote's invoice. Default 10 min.
	InvoiceExpiry time.Duration
	// MaxQuoteSat caps one quote. Default 50000 sats.
	MaxQuoteSat uint64
	// MaxOpenQuotes caps unexpired unpaid quotes over all buyers, libp2p
	// streams and circuits together. Default 256.
	MaxOpenQuotes int
	// MaxOpenQuotesPerPeer caps them per libp2p peer, and per circuit
	// session for streams through circuits (ServeConn). Default 4.
	MaxOpenQuotesPerPeer int
	// QuoteHold is how long an unpaid quote keeps its open-quote slot
	// against a new buyer once all MaxOpenQuotes are taken; after it the
	// oldest such quote gives its slot up (its invoice stays payable and
	// the quote mintable until the invoice expires). Default 2 min (an
	// honest buyer pays within seconds; a mint-only circuit lives 2 min).
	// Must not exceed InvoiceExpiry.
	QuoteHold time.Duration
	// MaxCircuitStreams caps the streams through circuits (ServeConn) served
	// at once; beyond it a stream is answered Error 9 (busy) without being
	// read. Each holds at most one message of voucher.MaxMessageSize bytes,
	// so together at most about 2 MiB at the default. Default 64.
	MaxCircuitStreams int
	// StreamTimeout bounds one mint stream, LND calls included. Default 30 s.
	StreamTimeout time.Duration
	// IssuedRetention is how long a signed quote is kept for retries.
	// Default 30 days.
	IssuedRetention time.Duration
	// SwapHold is how long a swap (VOUCHERS.md §3.10) holds a slot of the
	// open-quote table against its sender: swaps and quotes share
	// MaxOpenQuotes, MaxOpenQuotesPerPeer and the fair-share hand-over, so
	// one peer or circuit gets at most MaxOpenQuotesPerPeer swaps per
	// SwapHold. Default 1 min.
	SwapHold time.Duration
	// MaxSwapsSigning caps the swaps whose outputs are being signed at
	// once (RSA work); others wait, at most until their stream's
	// deadline, then get Error 9. Default 1.
	MaxSwapsSigning int
	// MaxSwapRecords caps the stored swap answers (each up to about 33
	// KB; pruned once their inputs' keysets stop redeeming); at the cap
	// new swaps get Error 9. Default 16384.
	MaxSwapRecords int
	// HousekeepingInterval is how often the mint rotates keysets and prunes
	// its stores. Default 1 min.
	HousekeepingInterval time.Duration

	// OnKeysets, if set, is called with the keysets to publish whenever
	// they change (after rotation). It must not block for long.
	OnKeysets func([]*voucher.Keyset)
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observe, if set, is told where each request came from, as far as
	// the mint can tell (Via), before it is served. It must not block.
	// Tests use it to show that a purchase through a circuit never shows
	// the mint its buyer; node never sets it. Default nil.
	Observe func(Via)

	// Logger is the logger. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if len(c.Denominations) == 0 {
		for e := 0; e <= 10; e++ {
			c.Denominations = append(c.Denominations, 1<<e)
		}
	}
	if c.KeyBits == 0 {
		c.KeyBits = 2048
	}
	if c.KeysetLifetime == 0 {
		c.KeysetLifetime = 30 * 24 * time.Hour
	}
	if c.Grace == 0 {
		c.Grace = 7 * 24 * time.Hour
	}
	if c.InvoiceExpiry == 0 {
		c.InvoiceExpiry = 10 * time.Minute
	}
	if c.MaxQuoteSat == 0 {
		c.MaxQuoteSat = 50000
	}
	if c.MaxOpenQuotes == 0 {
		c.MaxOpenQuotes = 256
	}
	if c.MaxOpenQuotesPerPeer == 0 {
		c.MaxOpenQuotesPerPeer = 4
	}
	if c.QuoteHold == 0 {
		c.QuoteHold = 2 * time.Minute
	}
	if c.MaxCircuitStreams == 0 {
		c.MaxCircuitStreams = 64
	}
	if c.StreamTimeout == 0 {
		c.StreamTimeout = 30 * time.Second
	}
	if c.IssuedRetention == 0 {
		c.IssuedRetention = 30 * 24 * time.Hour
	}
	if c.SwapHold == 0 {
		c.SwapHold = time.Minute
	}
	if c.MaxSwapsSigning == 0 {
		c.MaxSwapsSigning = 1
	}
	if c.MaxSwapRecords == 0 {
		c.MaxSwapRecords = 16384
	}
	if c.HousekeepingInterval == 0 {
		c.HousekeepingInterval = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate checks the configuration and names the first bad field.
func (c *Config) Validate() error {
	if c.Path == "" {
		return errors.New("mint config: Path is required")
	}
	if c.Host != nil {
		if c.CreateInvoice == nil {
			return errors.New("mint config: CreateInvoice is required with Host")
		}
		if c.InvoiceSettled == nil {
			return errors.New("mint config: InvoiceSettled is required with Host")
		}
		if c.Payee == ([voucher.PayeeSize]byte{}) {
			return errors.New("mint config: Payee is required with Host")
		}
	}
	seen := map[uint64]bool{}
	for _, d := range c.Denominations {
		if d == 0 || d&(d-1) != 0 || d > 1<<voucher.MaxDenomExp || seen[d] {
			return fmt.Errorf("mint config: Denominations: bad or duplicate amount %d", d)
		}
		seen[d] = true
	}
	if len(c.Denominations) > voucher.MaxKeysPerKeyset {
		return fmt.Errorf("mint config: Denominations: %d amounts", len(c.Denominations))
	}
	if c.KeyBits < voucher.MinModulusBytes*8 || c.KeyBits > voucher.MaxModulusBytes*8 {
		return fmt.Errorf("mint config: KeyBits %d not in 2048..4096", c.KeyBits)
	}
	if c.KeysetLifetime < time.Minute {
		return fmt.Errorf("mint config: KeysetLifetime %v too short", c.KeysetLifetime)
	}
	if c.Grace < 0 {
		return fmt.Errorf("mint config: Grace %v negative", c.Grace)
	}
	if c.InvoiceExpiry < 10*time.Second {
		return fmt.Errorf("mint config: InvoiceExpiry %v too short", c.InvoiceExpiry)
	}
	if c.MaxOpenQuotes < 1 || c.MaxOpenQuotesPerPeer < 1 {
		return errors.New("mint config: MaxOpenQuotes and MaxOpenQuotesPerPeer must be positive")
	}
	if c.QuoteHold < 0 || c.QuoteHold > c.InvoiceExpiry {
		return fmt.Errorf("mint config: QuoteHold %v not in 0..InvoiceExpiry (%v)", c.QuoteHold, c.InvoiceExpiry)
	}
	if c.MaxCircuitStreams < 1 {
		return fmt.Errorf("mint config: MaxCircuitStreams %d must be positive", c.MaxCircuitStreams)
	}
	if c.SwapHold < 0 || c.MaxSwapsSigning < 1 || c.MaxSwapRecords < 1 {
		return errors.New("mint config: SwapHold must not be negative; MaxSwapsSigning and MaxSwapRecords must be positive")
	}
	if c.StreamTimeout <= 0 || c.IssuedRetention <= 0 || c.HousekeepingInterval <= 0 {
		return errors.New("mint config: StreamTimeout, IssuedRetention and HousekeepingInterval must be positive")
	}
	return nil
}

// PayeeFromHex converts a node key in hex (as LND's GetInfo reports it) to
// Config.Payee.
func PayeeFromHex(s string) ([voucher.PayeeSize]byte, error) {
	var out [voucher.PayeeSize]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != voucher.PayeeSize || (b[0] != 2 && b[0] != 3) {
		return out, fmt.Errorf("mint: payee %q is not a compressed public key", s)
	}
	copy(out[:], b)
	return out, nil
}

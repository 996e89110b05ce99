package wallet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Invoice is what DecodeInvoice reports about a BOLT 11 payment request.
type Invoice struct {
	AmountSat  int64
	AmountMsat int64  // if non-zero, must be exactly AmountSat·1000
	Payee      string // hex of the payee's 33-byte node key
	PayHash    [32]byte
	Expiry     time.Time // absolute: creation time + expiry
}

// Published is what a node publishes in its signed advert, as far as the
// wallet is concerned.
type Published struct {
	// Payee is the hex of the node's LND key: every invoice must pay it.
	Payee string
	// Keysets are the node's published keysets.
	Keysets []*voucher.Keyset
	// PriceMsatPerMB is the advertised service price.
	PriceMsatPerMB uint64
}

// Keyset rule defaults (VOUCHERS.md §1.3). A mint with the default
// rotation (voucher/mint: 30 days of minting, the next keyset published
// 7.5 days ahead) shows at most 2 keysets at once and 1 new one every 30
// days, so a client sees at most 3 new ones in any 30 days (2 at first
// contact, then the next) and a window 4 times the minimum.
const (
	DefaultMinMintWindow   = 7 * 24 * time.Hour
	DefaultMaxNewKeysets   = 3
	DefaultNewKeysetPeriod = 30 * 24 * time.Hour
)

// Config configures a Wallet. Zero values take the defaults on each field.
type Config struct {
	// Dial opens one mint exchange with node: a stream that carries one
	// request and one response (VOUCHERS.md §3.1, §3.7), closed by the
	// wallet. Node supplies it: a direct /co-infuse/mint/1 stream to the
	// client's entry guards (they see its address anyway), and to every
	// other node a stream through a circuit whose last hop is that node
	// (BEGIN service mint, target mint:1), so it never learns who buys. If
	// the stream has a SetDeadline method the wallet sets its deadline.
	// Nil opens a direct /co-infuse/mint/1 stream on Host (tests).
	Dial func(ctx context.Context, node peer.ID) (io.ReadWriteCloser, error)
	// Host opens direct mint streams when Dial is nil.
	Host host.Host
	// Path is the wallet's bbolt file (created 0600). Required.
	Path string

	// DecodeInvoice decodes a payment request with the user's LND.
	// Required for buying.
	DecodeInvoice func(ctx context.Context, payReq string) (Invoice, error)
	// PayInvoice pays a payment request from the user's LND with at most
	// feeLimitSat in fees and returns the preimage. It must be safe to
	// call again for the same invoice: an invoice that is already paid is
	// reported as success with its preimage. Required for buying.
	PayInvoice func(ctx context.Context, payReq string, feeLimitSat int64) (preimage [32]byte, err error)
	// Published returns what node publishes in its advert (verified by
	// discovery/). Required for Buy and automatic purchase.
	Published func(ctx context.Context, node peer.ID) (Published, error)

	// MaxPriceMsatPerMB is the highest service price the wallet buys
	// vouchers for. Default 100000 msat/MB.
	MaxPriceMsatPerMB uint64
	// DailyBudgetSat caps the sats spent on vouchers in any rolling 24
	// hours, counting each purchase at its amount plus its routing-fee
	// limit (the most it can cost). Default 10000.
	DailyBudgetSat uint64
	// FeeLimitPPM is the routing fee limit as parts per million of the
	// amount. Default 10000 (1 %).
	FeeLimitPPM uint64
	// MinFeeLimitSat is the fee limit floor. Default 10 sats.
	MinFeeLimitSat int64
	// TargetBalanceSat is the balance automatic purchase keeps per node in
	// use. Default 1000 sats; 0 after defaults only if AutoBuy is false.
	TargetBalanceSat uint64
	// RefillBelowSat triggers a purchase when a node's available balance
	// drops below it. Default TargetBalanceSat/2.
	RefillBelowSat uint64
	// AutoBuy turns automatic purchase on. Default off.
	AutoBuy bool
	// AutoBuyInterval is the mean gap between two rounds of automatic
	// purchase. The gaps are random: exponential with this mean, cut to
	// AutoBuyInterval/10 .. 4×AutoBuyInterval (refillDelay), drawn anew
	// each round and independent of use, so a purchase tells a node
	// nothing about when the client will next use it (THREAT_MODEL
	// "Payments"). Default 30 s.
	AutoBuyInterval time.Duration
	// Candidates, if set, names the nodes path selection is likely to
	// pick (node passes its guards and a bounded set of the relays and
	// exits it knows). Automatic purchase keeps TargetBalanceSat at each
	// of them as well as at nodes in use, so a circuit finds its vouchers
	// already bought. It must not block. Default nil: nodes in use only.
	Candidates func() []peer.ID
	// InUseFor is how long a node counts as in use after Track or Reserve.
	// Default 10 min.
	InUseFor time.Duration
	// BackoffMin and BackoffMax bound the exponential backoff after a node
	// misbehaves or fails. Defaults 1 min and 1 h.
	BackoffMin, BackoffMax time.Duration
	// MaxKeysetsPerNode is the most keysets a node may have mintable at
	// once; more is treated as an attempt to tag clients. Default 2.
	MaxKeysetsPerNode int
	// MinMintWindow is the shortest minting window (NotBefore..NotAfter)
	// of any keyset a node publishes; a shorter one is refused
	// (ErrKeysetWindow). Default DefaultMinMintWindow (7 days).
	MinMintWindow time.Duration
	// MaxNewKeysets is the most keysets of one node first seen within
	// NewKeysetPeriod; one more is refused (ErrKeysetChurn). Default
	// DefaultMaxNewKeysets (3).
	MaxNewKeysets int
	// NewKeysetPeriod is the window MaxNewKeysets counts in. Default
	// DefaultNewKeysetPeriod (30 days).
	NewKeysetPeriod time.Duration
	// MinInvoiceLeft is the least time an invoice must have before expiry
	// to be paid. Default 30 s.
	MinInvoiceLeft time.Duration
	// MaxInvoiceExpiry is the latest an invoice may expire. Default 1 h.
	MaxInvoiceExpiry time.Duration
	// StreamTimeout bounds one mint stream. Default 30 s.
	StreamTimeout time.Duration
	// SettleWait is how long a mint request keeps retrying while the node
	// does not yet see the payment as settled. Default 20 s.
	SettleWait time.Duration

	// VoidAfter is how long after its invoice expired an unpaid purchase is
	// declared void. Until then Resume keeps asking the node, since a
	// payment that was in flight at expiry may still settle. Default 24 h.
	VoidAfter time.Duration
	// Retention is how long finished records (spent, swapped or void
	// vouchers, done or expired purchases, swaps no longer pending,
	// expired vouchers past their window) are
	// kept before the wallet deletes them. Default 30 days.
	Retention time.Duration

	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger is the logger. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if c.MaxPriceMsatPerMB == 0 {
		c.MaxPriceMsatPerMB = 100000
	}
	if c.DailyBudgetSat == 0 {
		c.DailyBudgetSat = 10000
	}
	if c.FeeLimitPPM == 0 {
		c.FeeLimitPPM = 10000
	}
	if c.MinFeeLimitSat == 0 {
		c.MinFeeLimitSat = 10
	}
	if c.TargetBalanceSat == 0 {
		c.TargetBalanceSat = 1000
	}
	if c.RefillBelowSat == 0 {
		c.RefillBelowSat = c.TargetBalanceSat / 2
	}
	if c.MaxKeysetsPerNode == 0 {
		c.MaxKeysetsPerNode = 2
	}
	if c.MaxNewKeysets == 0 {
		c.MaxNewKeysets = DefaultMaxNewKeysets
	}
	def(&c.MinMintWindow, DefaultMinMintWindow)
	def(&c.NewKeysetPeriod, DefaultNewKeysetPeriod)
	def(&c.AutoBuyInterval, 30*time.Second)
	def(&c.InUseFor, 10*time.Minute)
	def(&c.BackoffMin, time.Minute)
	def(&c.BackoffMax, time.Hour)
	def(&c.MinInvoiceLeft, 30*time.Second)
	def(&c.MaxInvoiceExpiry, time.Hour)
	def(&c.StreamTimeout, 30*time.Second)
	def(&c.SettleWait, 20*time.Second)
	def(&c.Retention, 30*24*time.Hour)
	def(&c.VoidAfter, 24*time.Hour)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate checks the configuration and names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("wallet config: Path is required")
	case c.AutoBuy && ((c.Host == nil && c.Dial == nil) || c.DecodeInvoice == nil || c.PayInvoice == nil || c.Published == nil):
		return errors.New("wallet config: AutoBuy needs Dial (or Host), DecodeInvoice, PayInvoice and Published")
	case c.RefillBelowSat > c.TargetBalanceSat:
		return errors.New("wallet config: RefillBelowSat above TargetBalanceSat")
	case c.TargetBalanceSat > c.DailyBudgetSat:
		return errors.New("wallet config: TargetBalanceSat above DailyBudgetSat")
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return errors.New("wallet config: BackoffMin/BackoffMax out of order")
	case c.MaxKeysetsPerNode < 1:
		return errors.New("wallet config: MaxKeysetsPerNode must be positive")
	case c.MinMintWindow < 0:
		return errors.New("wallet config: MinMintWindow negative")
	case c.MaxNewKeysets < 1 || c.NewKeysetPeriod < 0:
		return errors.New("wallet config: MaxNewKeysets must be positive and NewKeysetPeriod not negative")
	case c.MinFeeLimitSat < 0:
		return errors.New("wallet config: MinFeeLimitSat negative")
	case c.AutoBuyInterval <= 0 || c.InUseFor <= 0 || c.StreamTimeout <= 0 || c.SettleWait < 0:
		return errors.New("wallet config: AutoBuyInterval, InUseFor and StreamTimeout must be positive")
	}
	return nil
}

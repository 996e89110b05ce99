package node

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/lightning"
	"github.com/co-infuse/co-infuse/payment"
	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/mint"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// PaymentsConfig turns on Chaumian vouchers bought over Lightning: relays and
// exits run a mint (they sell vouchers for their own bandwidth, invoiced by
// their LND); clients run a wallet that buys them from the user's LND.
type PaymentsConfig struct {
	// Enabled turns on the mint (relay, exit) and the wallet (client).
	// Requires the lnd section. Default false.
	Enabled bool `yaml:"enabled"`
	// AutoBuy keeps TargetBalanceSat of vouchers for every node the client
	// uses. Default true when payments are enabled.
	AutoBuy *bool `yaml:"auto_buy"`
	// TargetBalanceSat is the voucher balance kept, bought ahead, at each
	// node in use or likely to be picked (at most 8 besides those in use:
	// node/buy.go buyCandidates), in sats. Default 300 (150 MB at 2
	// sat/MB), so the balances bought ahead take a quarter of the default
	// budget.
	TargetBalanceSat uint64 `yaml:"target_balance_sat"`
	// DailyBudgetSat caps what the wallet spends on vouchers in any 24
	// hours, routing fees included, in sats. Default 10000.
	DailyBudgetSat uint64 `yaml:"daily_budget_sat"`
	// RefillMean is the mean gap between the wallet's background purchase
	// rounds; the gaps are exponential, cut to 1/10..4× the mean
	// (VOUCHERS.md §3.8). Default 30s; at least 100ms.
	RefillMean time.Duration `yaml:"refill_mean"`
	// MaxNewCircuitsPerMinute caps how many new circuits with a paid hop
	// the client opens a minute (bursts of as many): each prepays its
	// hops, so a runaway application cannot drain the wallet in prepays.
	// A SOCKS request beyond it fails with a general failure. Default 60
	// (bitcoind keeps about ten outbound connections and opens a few a
	// minute).
	MaxNewCircuitsPerMinute int `yaml:"max_new_circuits_per_minute"`
}

func (c *PaymentsConfig) applyDefaults() {
	if c.AutoBuy == nil {
		on := true
		c.AutoBuy = &on
	}
	if c.TargetBalanceSat == 0 {
		c.TargetBalanceSat = 300
	}
	if c.DailyBudgetSat == 0 {
		c.DailyBudgetSat = 10000
	}
	if c.RefillMean == 0 {
		c.RefillMean = 30 * time.Second
	}
	if c.MaxNewCircuitsPerMinute == 0 {
		c.MaxNewCircuitsPerMinute = payment.DefaultMaxPaidCircuitsPerMinute
	}
}

// payments is the node's voucher machinery; nil fields are roles it lacks.
type payments struct {
	lnd    *lightning.Client
	mint   *mint.Mint
	wallet *wallet.Wallet
}

// startPayments dials LND, waiting up to lnd.wait_for_credentials for it
// (paywait.go), and starts the mint (relays and exits) and the wallet
// (clients).
func (n *Node) startPayments(ctx context.Context) (*payments, error) {
	lcfg := n.cfg.LND
	lcfg.Logger = n.log
	lnd, err := lightning.DialWait(ctx, lcfg, n.payWait.progress(n.log))
	if err != nil {
		return nil, fmt.Errorf("payments need LND (lnd.host %s): %w", lcfg.Host, err)
	}
	p := &payments{lnd: lnd}
	if n.relays() {
		payee, err := mint.PayeeFromHex(lnd.Info().IdentityPubkey)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("LND identity key: %w", err)
		}
		p.mint, err = mint.New(mint.Config{
			Host:           n.host,
			Path:           filepath.Join(n.cfg.DataDir, "mint.db"),
			CreateInvoice:  lnd.CreateInvoice,
			InvoiceSettled: lnd.InvoiceSettled,
			Payee:          payee,
			PriceMsatPerMB: n.cfg.lowestPriceSatPerMB() * 1000,
			OnKeysets:      n.onKeysets,
			Observe:        n.mintObserve,
			Logger:         n.log,
		})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("mint: %w", err)
		}
		if err := p.mint.Start(); err != nil {
			p.close()
			return nil, fmt.Errorf("mint: %w", err)
		}
	}
	if n.cfg.Has(RoleClient) {
		p.wallet, err = wallet.New(wallet.Config{
			Dial:       n.dialMint,
			Candidates: n.buyCandidates,
			Path:       filepath.Join(n.cfg.DataDir, "wallet.db"),
			DecodeInvoice: func(ctx context.Context, pr string) (wallet.Invoice, error) {
				inv, err := lnd.DecodeInvoice(ctx, pr)
				return wallet.Invoice{AmountSat: inv.AmountSat, AmountMsat: inv.AmountMsat,
					Payee: inv.Payee, PayHash: inv.PayHash, Expiry: inv.Expiry}, err
			},
			PayInvoice:        lnd.PayInvoice,
			Published:         n.published,
			MaxPriceMsatPerMB: n.cfg.Discovery.MaxPriceSatPerMB * 1000,
			DailyBudgetSat:    n.cfg.Payments.DailyBudgetSat,
			TargetBalanceSat:  n.cfg.Payments.TargetBalanceSat,
			AutoBuy:           *n.cfg.Payments.AutoBuy,
			AutoBuyInterval:   n.cfg.Payments.RefillMean,
			Now:               n.now,
			Logger:            n.log,
		})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("wallet: %w", err)
		}
		// Started by startWallet once discovery and the engine are up:
		// its purchases go through circuits.
	}
	return p, nil
}

// startWallet starts the wallet's background purchases (resuming any a
// crash left unfinished); they need discovery and the circuit engine.
func (n *Node) startWallet() error {
	if n.pay() == nil || n.pay().wallet == nil {
		return nil
	}
	if err := n.pay().wallet.Start(); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	return nil
}

func (p *payments) close() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.wallet != nil {
		errs = append(errs, p.wallet.Stop())
	}
	if p.mint != nil {
		errs = append(errs, p.mint.Stop())
	}
	errs = append(errs, p.lnd.Close())
	return errors.Join(errs...)
}

// rolePrice is what this node charges per MB in role r, as its advert
// says (advert): 0 for a role it does not run.
func (c *Config) rolePrice(r Role) uint64 {
	if !c.Has(r) {
		return 0
	}
	return c.Discovery.PriceSatPerMB[r]
}

// ledgerPrices prices the hop ledger's sessions by the role this node
// plays in each circuit, as a client prices the hop from the advert
// (hopPrice): the relay price until a BEGIN names a service, then that
// service's role price. The mint service is priced as relaying (purchase
// circuits are not prepaid).
func (c *Config) ledgerPrices() (relay uint64, services map[cell.Service]uint64) {
	services = make(map[cell.Service]uint64)
	for svc, r := range map[cell.Service]Role{cell.ServiceExit: RoleExit, cell.ServiceMempool: RoleMempool, cell.ServiceRendezvous: RoleRendezvous, cell.ServiceTorGateway: RoleTorGateway} {
		if c.Has(r) {
			services[svc] = c.rolePrice(r)
		}
	}
	return c.rolePrice(RoleRelay), services
}

// lowestPriceSatPerMB is the price the mint quotes: the lowest among the
// roles this node runs. A client uses the vouchers in whichever role path
// selection picks the node for, each role's price checked against its cap
// there, so a node whose exit price is above a client's cap still sells
// it vouchers for relaying.
func (c *Config) lowestPriceSatPerMB() uint64 {
	var price uint64
	first := true
	for _, r := range []Role{RoleRelay, RoleExit, RoleMempool, RoleRendezvous, RoleTorGateway} {
		if c.Has(r) && (first || c.Discovery.PriceSatPerMB[r] < price) {
			price, first = c.Discovery.PriceSatPerMB[r], false
		}
	}
	return price
}

// published tells the wallet what node publishes in its verified advert:
// the LND payee, keysets and price. The wallet refuses any keyset not here.
func (n *Node) published(ctx context.Context, node peer.ID) (wallet.Published, error) {
	ad, err := n.disc.Lookup(ctx, node)
	if err != nil {
		return wallet.Published{}, err
	}
	// Before paying, ask a few other nodes for their copy of this advert:
	// a node that shows different keysets to different clients (to tag
	// them) is caught when a witness holds another version at the same
	// sequence number. Witnesses that cannot answer prove nothing either
	// way, so only a proven equivocation stops the purchase.
	if _, err := n.disc.CrossCheck(ctx, node, nil); errors.Is(err, discovery.ErrEquivocation) {
		return wallet.Published{}, fmt.Errorf("node %s shows different adverts to different clients; not buying from it: %w", node, err)
	}
	if ad.Payee == "" {
		return wallet.Published{}, fmt.Errorf("node %s sells no vouchers (its advert names no Lightning payee)", node)
	}
	// The lowest role price, as the mint quotes it (lowestPriceSatPerMB):
	// each role's price is checked against the cap where the node is
	// picked for it (path selection, prepay).
	pub := wallet.Published{Payee: ad.Payee}
	for i, r := range ad.Roles {
		if p := ad.Prices[r] * 1000; i == 0 || p < pub.PriceMsatPerMB {
			pub.PriceMsatPerMB = p
		}
	}
	for i, k := range ad.Keysets {
		ks, err := keysetFromAdvert(k)
		if err != nil {
			return wallet.Published{}, fmt.Errorf("node %s keyset %d: %w", node, i, err)
		}
		pub.Keysets = append(pub.Keysets, ks)
	}
	return pub, nil
}

// keysetToAdvert and keysetFromAdvert carry a voucher keyset in a discovery
// advert: one PKIX key per denomination and the keyset's validity window.
// The rebuilt keyset must have the advertised ID, so a node cannot smuggle
// a different key under a published ID.
func keysetToAdvert(ks *voucher.Keyset) (discovery.Keyset, error) {
	id := ks.ID()
	out := discovery.Keyset{
		ID:        id[:],
		NotBefore: ks.NotBefore(),
		MintUntil: ks.NotAfter(),
		NotAfter:  ks.RedeemUntil(),
	}
	for _, a := range ks.Amounts() {
		k, _ := ks.Key(a)
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return discovery.Keyset{}, err
		}
		out.Denominations = append(out.Denominations, a)
		out.PublicKeys = append(out.PublicKeys, der)
	}
	return out, nil
}

func keysetFromAdvert(k discovery.Keyset) (*voucher.Keyset, error) {
	if len(k.Denominations) != len(k.PublicKeys) {
		return nil, errors.New("denominations and keys differ in number")
	}
	keys := make([]voucher.DenomKey, len(k.PublicKeys))
	for i, der := range k.PublicKeys {
		pk, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		rk, ok := pk.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key %d is not RSA", i)
		}
		keys[i] = voucher.DenomKey{Amount: k.Denominations[i], Key: rk}
	}
	ks, err := voucher.NewKeyset(k.NotBefore, k.MintUntil, k.NotAfter, keys)
	if err != nil {
		return nil, err
	}
	if id := ks.ID(); string(id[:]) != string(k.ID) {
		return nil, errors.New("keyset ID does not match its keys")
	}
	return ks, nil
}

// WalletStatus is what GET /v1/wallet answers.
type WalletStatus struct {
	Balances        map[string]wallet.Balance `json:"balances"` // by node peer ID
	BudgetUsedSat   uint64                    `json:"budget_used_sat"`
	BudgetLimitSat  uint64                    `json:"budget_limit_sat"`
	RecentPurchases []wallet.Purchase         `json:"recent_purchases"`
}

// WalletStatus reports balances, budget use and recent purchases.
func (n *Node) WalletStatus() (WalletStatus, error) {
	if n.pay() == nil || n.pay().wallet == nil {
		if n.payWait.waiting() {
			return WalletStatus{}, n.payWait.notReady()
		}
		return WalletStatus{}, ErrNoWallet
	}
	w := n.pay().wallet
	bal, err := w.Balances()
	if err != nil {
		return WalletStatus{}, err
	}
	st := WalletStatus{Balances: map[string]wallet.Balance{}}
	for id, b := range bal {
		st.Balances[id.String()] = b
	}
	if st.BudgetUsedSat, st.BudgetLimitSat, err = w.BudgetUsed(); err != nil {
		return WalletStatus{}, err
	}
	if st.RecentPurchases, err = w.RecentPurchases(20); err != nil {
		return WalletStatus{}, err
	}
	return st, nil
}

// ErrNoWallet: the node runs no wallet (payments off or not a client).
var ErrNoWallet = errors.New("this node has no wallet: set payments.enabled and the lnd section, and run the client role")

// Buy buys sats worth of vouchers from node by hand.
func (n *Node) Buy(ctx context.Context, node peer.ID, sats uint64) (wallet.Purchase, error) {
	if n.pay() == nil || n.pay().wallet == nil {
		if n.payWait.waiting() {
			return wallet.Purchase{}, n.payWait.notReady()
		}
		return wallet.Purchase{}, ErrNoWallet
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return n.pay().wallet.Buy(ctx, node, sats)
}

package wallet

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// Buckets of the wallet file. Records are JSON: the file is ours, never a
// peer's input.
var (
	bucketPurchases = []byte("purchases") // quote id → purchaseRecord
	bucketVouchers  = []byte("vouchers")  // SpendID → voucherRecord
	bucketKeysets   = []byte("keysets")   // keyset id → published encoding
	// bucketSwaps (settle.go): swap request id → swapRecord
)

// PurchaseState is where a purchase stands.
type PurchaseState uint8

// Purchase states, in order.
const (
	// PurchaseQuoted: quote and seeds stored; the invoice may or may not be paid.
	PurchaseQuoted PurchaseState = 1
	// PurchasePaid: PayInvoice succeeded; vouchers not yet signed.
	PurchasePaid PurchaseState = 2
	// PurchaseDone: vouchers signed and stored.
	PurchaseDone PurchaseState = 3
	// PurchaseExpired: the invoice expired unpaid; nothing was spent.
	PurchaseExpired PurchaseState = 4
)

func (s PurchaseState) String() string {
	switch s {
	case PurchaseQuoted:
		return "quoted"
	case PurchasePaid:
		return "paid"
	case PurchaseDone:
		return "done"
	case PurchaseExpired:
		return "expired"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// VoucherState is where a voucher stands.
type VoucherState uint8

// Voucher states.
const (
	VoucherQuoted   VoucherState = 1 // seed chosen, invoice not yet paid
	VoucherPaid     VoucherState = 2 // paid, not yet signed
	VoucherSigned   VoucherState = 3 // spendable
	VoucherReserved VoucherState = 4 // handed to a circuit, outcome unknown
	VoucherSpent    VoucherState = 5 // accepted by the node
	VoucherVoid     VoucherState = 6 // its purchase expired unpaid
	VoucherUnsure   VoucherState = 7 // offered, no answer: settled by a swap (settle.go)
	VoucherSwapOut  VoucherState = 8 // output of a pending swap: seed stored, not yet signed
	VoucherSwapped  VoucherState = 9 // given to its mint in a swap for new vouchers of the same value
)

func (s VoucherState) String() string {
	switch s {
	case VoucherQuoted:
		return "quoted"
	case VoucherPaid:
		return "paid"
	case VoucherSigned:
		return "signed"
	case VoucherReserved:
		return "reserved"
	case VoucherSpent:
		return "spent"
	case VoucherVoid:
		return "void"
	case VoucherUnsure:
		return "unsure"
	case VoucherSwapOut:
		return "swap-out"
	case VoucherSwapped:
		return "swapped"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

type purchaseRecord struct {
	State       PurchaseState
	Node        peer.ID
	Amount      uint64
	Keyset      voucher.KeysetID
	Price       uint64 // msat per MB, as quoted
	Created     time.Time
	Expires     time.Time // the invoice's expiry
	PayHash     [32]byte
	PayReq      string
	Preimage    [32]byte
	Vouchers    [][32]byte // SpendIDs, in mint-request order
	FeeLimitSat int64
}

// cost is what the purchase may take from the budget: the amount plus the
// routing-fee limit (PayInvoice does not report the fee actually paid).
func (r *purchaseRecord) cost() uint64 { return r.Amount + uint64(max(r.FeeLimitSat, 0)) }

type voucherRecord struct {
	State       VoucherState
	Node        peer.ID
	Keyset      voucher.KeysetID
	Amount      uint64
	Seed        voucher.Seed
	Quote       [voucher.QuoteIDSize]byte
	Sig         []byte
	RedeemUntil time.Time
	Updated     time.Time
}

// Purchase is a purchase as the CLI shows it.
type Purchase struct {
	ID             string           `json:"id"` // hex quote id
	Node           peer.ID          `json:"node"`
	AmountSat      uint64           `json:"amount_sat"`
	State          PurchaseState    `json:"state"` // 1 quoted, 2 paid, 3 done, 4 expired
	Created        time.Time        `json:"created"`
	Expires        time.Time        `json:"expires"` // the invoice's expiry
	PriceMsatPerMB uint64           `json:"price_msat_per_mb"`
	Keyset         voucher.KeysetID `json:"keyset"`
}

func (r *purchaseRecord) public(id []byte) Purchase {
	return Purchase{
		ID: hex.EncodeToString(id), Node: r.Node, AmountSat: r.Amount, State: r.State,
		Created: r.Created, Expires: r.Expires, PriceMsatPerMB: r.Price, Keyset: r.Keyset,
	}
}

// Balance is one node's vouchers by state, in sats.
type Balance struct {
	Available uint64 `json:"available"` // signed, unexpired
	Reserved  uint64 `json:"reserved"`  // handed out, or offered with no answer yet (unsure: being settled by a swap)
	Pending   uint64 `json:"pending"`   // quoted or paid, not yet signed
	Expired   uint64 `json:"expired"`   // signed but past the keyset's redemption window
	Spent     uint64 `json:"spent"`     // accepted by the node (until pruned after Config.Retention); swapped vouchers are not counted: their value is in their swap's outputs
	// Vouchers counts the signed vouchers held: those in Available,
	// Reserved and Expired.
	Vouchers int `json:"vouchers"`
	// OneSat counts the 1-sat vouchers in Available and Pending: the
	// small vouchers that let handshake prepays of short circuits be paid
	// exactly (VOUCHERS.md §3.8, §4).
	OneSat int `json:"one_sat"`
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
	raw := b.Get(k)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("wallet: corrupt record %x: %w", k, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func (v *voucherRecord) voucher() voucher.Voucher {
	return voucher.Voucher{Keyset: v.Keyset, Amount: v.Amount, Secret: v.Seed.Secret(), Sig: v.Sig}
}

package lnfake

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// ErrNoInvoice is returned for an unknown payment request or hash.
var ErrNoInvoice = errors.New("lnfake: no such invoice")

// Invoice mirrors wallet.Invoice without importing it.
type Invoice struct {
	AmountSat  int64
	AmountMsat int64
	Payee      string
	PayHash    [32]byte
	Expiry     time.Time
}

type invoice struct {
	payReq   string
	amount   int64
	preimage [32]byte
	hash     [32]byte
	expiry   time.Time
	settled  bool
	held     bool // in flight: paid by the payer, not yet settled
}

// Network is the fake. The zero value is not usable; call New.
type Network struct {
	// PayeeKey is the mint's node key (33 bytes).
	PayeeKey [33]byte
	// Now is the clock for invoice expiry.
	Now func() time.Time

	mu       sync.Mutex
	byReq    map[string]*invoice   // guarded by mu
	byHash   map[[32]byte]*invoice // guarded by mu
	payments int                   // guarded by mu; invoices actually paid
	payCalls int                   // guarded by mu

	// Failure injection, guarded by mu (set with Set*).
	failCreate, failSettled, failPay error
	payThenFail                      bool // pay, then report an error (LND dies after paying)
	hold                             bool // payments stay in flight until Release
	tamper                           func(*Invoice)
}

// New returns a fake network whose mint has node key payee.
func New(payee [33]byte, now func() time.Time) *Network {
	return &Network{PayeeKey: payee, Now: now, byReq: map[string]*invoice{}, byHash: map[[32]byte]*invoice{}}
}

// PayeeHex returns the payee key in hex.
func (n *Network) PayeeHex() string { return hex.EncodeToString(n.PayeeKey[:]) }

// SetFailures sets the errors CreateInvoice, InvoiceSettled and PayInvoice
// return (nil: work normally).
func (n *Network) SetFailures(create, settled, pay error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failCreate, n.failSettled, n.failPay = create, settled, pay
}

// SetPayThenFail makes PayInvoice pay and then report an error, like an
// LND whose answer is lost.
func (n *Network) SetPayThenFail(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.payThenFail = on
}

// SetHold makes PayInvoice leave payments in flight (an HTLC that neither
// settles nor fails) and report an error, until Release.
func (n *Network) SetHold(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hold = on
}

// Release settles every payment held in flight.
func (n *Network) Release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, inv := range n.byHash {
		if inv.held {
			inv.held, inv.settled = false, true
		}
	}
}

// SetTamper installs a func that alters what DecodeInvoice reports.
func (n *Network) SetTamper(f func(*Invoice)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tamper = f
}

// Payments returns how many invoices were actually paid and how many
// times PayInvoice was called.
func (n *Network) Payments() (paid, calls int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.payments, n.payCalls
}

// CreateInvoice is the mint's Config.CreateInvoice.
func (n *Network) CreateInvoice(ctx context.Context, amtSat int64, memo string, expiry time.Duration) (string, [32]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failCreate != nil {
		return "", [32]byte{}, n.failCreate
	}
	inv := &invoice{amount: amtSat, expiry: n.Now().Add(expiry)}
	rand.Read(inv.preimage[:])
	inv.hash = sha256.Sum256(inv.preimage[:])
	inv.payReq = "lnbcrt" + hex.EncodeToString(inv.hash[:])
	n.byReq[inv.payReq] = inv
	n.byHash[inv.hash] = inv
	return inv.payReq, inv.hash, nil
}

// InvoiceSettled is the mint's Config.InvoiceSettled.
func (n *Network) InvoiceSettled(ctx context.Context, hash [32]byte) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failSettled != nil {
		return false, n.failSettled
	}
	inv := n.byHash[hash]
	if inv == nil {
		return false, ErrNoInvoice
	}
	return inv.settled, nil
}

// DecodeInvoice is the wallet's Config.DecodeInvoice (converted by the test).
func (n *Network) DecodeInvoice(ctx context.Context, payReq string) (Invoice, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	inv := n.byReq[payReq]
	if inv == nil {
		return Invoice{}, ErrNoInvoice
	}
	out := Invoice{AmountSat: inv.amount, AmountMsat: inv.amount * 1000, Payee: n.PayeeHex(), PayHash: inv.hash, Expiry: inv.expiry}
	if n.tamper != nil {
		n.tamper(&out)
	}
	return out, nil
}

// PayInvoice is the wallet's Config.PayInvoice. Paying an invoice that is
// already settled returns its preimage without paying again, as the
// lightning/ wrapper does with LND's "already paid".
func (n *Network) PayInvoice(ctx context.Context, payReq string, feeLimitSat int64) ([32]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.payCalls++
	if n.failPay != nil {
		return [32]byte{}, n.failPay
	}
	inv := n.byReq[payReq]
	if inv == nil {
		return [32]byte{}, ErrNoInvoice
	}
	if inv.settled {
		return inv.preimage, nil
	}
	if inv.held {
		return [32]byte{}, errors.New("lnfake: payment in transition")
	}
	if !n.Now().Before(inv.expiry) {
		return [32]byte{}, errors.New("lnfake: invoice expired")
	}
	n.payments++
	if n.hold {
		inv.held = true
		return [32]byte{}, errors.New("lnfake: payment in flight")
	}
	inv.settled = true
	if n.payThenFail {
		return [32]byte{}, errors.New("lnfake: connection lost after payment")
	}
	return inv.preimage, nil
}

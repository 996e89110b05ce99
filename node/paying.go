package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// How a client pays the hops of a circuit: vouchers for PrepayBytes at each
// paid hop's advertised price when the circuit is built, then, whenever
// TopUpEveryBytes of stream data have crossed the circuit, vouchers for what
// was used, with a 25 % margin for cell padding and flow-control cells, so
// that each hop's allowance stays near PrepayBytes. A hop lets a session run SessionGraceBytes
// into debt, which covers the time a top-up takes.
const (
	PrepayBytes     = 8 << 20
	TopUpEveryBytes = 4 << 20
)

// paidCircuit is the client's ledger for one circuit's paid hops.
type paidCircuit struct {
	n     *Node
	c     *circuit.Circuit
	hops  []paidHop
	used  atomic.Int64 // stream bytes since the last top-up started
	topup atomic.Bool  // a top-up is running
}

type paidHop struct {
	index int // position in the circuit, 0-based
	peer  peer.ID
	price uint64 // sat/MB
}

// satsFor is what bytes cost at price sat/MB, rounded up, at least 1.
func satsFor(bytes int64, price uint64) uint64 {
	return max(1, (uint64(bytes)*price+999_999)/1_000_000)
}

// prepay pays every hop of c that sells vouchers (its advert names a payee)
// for PrepayBytes and returns the circuit's ledger, or nil when no hop is
// paid. On error c is unusable and the caller closes it.
func (n *Node) prepay(ctx context.Context, c *circuit.Circuit, path []discovery.Advert) (*paidCircuit, error) {
	pc := &paidCircuit{n: n, c: c}
	for i, ad := range path {
		if ad.Payee == "" {
			continue
		}
		var price uint64
		for _, r := range ad.Roles {
			price = max(price, ad.Price(r))
		}
		pc.hops = append(pc.hops, paidHop{index: i, peer: ad.Peer, price: price})
	}
	if len(pc.hops) == 0 {
		return nil, nil
	}
	for _, h := range pc.hops {
		if err := pc.pay(ctx, h, PrepayBytes); err != nil {
			return nil, err
		}
	}
	n.paid.Store(c.ID(), pc)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-c.Done():
		case <-n.ctx.Done():
		}
		n.paid.Delete(c.ID())
	}()
	return pc, nil
}

// pay sends hop h vouchers worth bytes of traffic in one TOPUP, buying them
// over Lightning first if the wallet holds too few.
func (pc *paidCircuit) pay(ctx context.Context, h paidHop, bytes int64) error {
	w := pc.n.pay.wallet
	sats := satsFor(bytes, h.price)
	payload, vs, err := w.ReserveBatch(h.peer, sats)
	if errors.Is(err, wallet.ErrInsufficient) {
		buy := max(sats, pc.n.cfg.Payments.TargetBalanceSat)
		if _, err := w.Buy(ctx, h.peer, buy); err != nil {
			return fmt.Errorf("buy vouchers from hop %d: %w", h.index+1, err)
		}
		payload, vs, err = w.ReserveBatch(h.peer, sats)
	}
	if err != nil {
		return fmt.Errorf("vouchers for hop %d: %w", h.index+1, err)
	}
	if _, err := pc.c.TopUp(ctx, h.index, payload); err != nil {
		// The hop did not confirm: keep the vouchers. If it did redeem
		// them after all, offering them again is refused as a double
		// spend; no voucher is ever counted twice.
		if rerr := w.Release(vs); rerr != nil {
			pc.n.log.Warn("release vouchers after failed top-up", "err", rerr)
		}
		return fmt.Errorf("pay hop %d: %w", h.index+1, err)
	}
	if err := w.MarkSpent(vs); err != nil {
		pc.n.log.Warn("mark vouchers spent", "err", err)
	}
	return nil
}

// count records stream bytes and starts a top-up when TopUpEveryBytes have
// passed since the last one began. Only one top-up runs per circuit.
func (pc *paidCircuit) count(b int) {
	if pc.used.Add(int64(b)) < TopUpEveryBytes || !pc.topup.CompareAndSwap(false, true) {
		return
	}
	n := pc.n
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer pc.topup.Store(false)
		used := pc.used.Swap(0)
		ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
		defer cancel()
		for _, h := range pc.hops {
			if err := pc.pay(ctx, h, used*5/4); err != nil {
				n.log.Info("circuit top-up failed; its hops will close it when the prepaid bytes run out", "circuit", pc.c.ID(), "err", err)
				return
			}
		}
	}()
}

// countingConn reports a stream's bytes to its circuit's ledger.
type countingConn struct {
	net.Conn
	pc *paidCircuit
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.pc.count(n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.pc.count(n)
	return n, err
}

// paidMap holds the ledgers of live paid circuits by circuit ID.
type paidMap = sync.Map

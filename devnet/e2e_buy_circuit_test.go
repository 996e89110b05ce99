package devnet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/voucher/mint"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// mintLog records, per node name, where each request to its mint came
// from as the mint saw it (mint.Config.Observe).
type mintLog struct {
	mu  sync.Mutex
	via map[string][]mint.Via
}

func (l *mintLog) options(name string) []node.Option {
	if name == "client" {
		return nil
	}
	return []node.Option{node.WithMintObserver(func(v mint.Via) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.via[name] = append(l.via[name], v)
	})}
}

func (l *mintLog) get(name string) []mint.Via {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.via[name])
}

// offsetClock is the client wallet's clock: real time plus an offset the
// test moves forward.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// TestE2EBuyAheadThroughCircuits runs a devnet with real Lightning (btcd,
// two lnd) and no start-up purchase: the client's wallet buys ahead on its
// own, in the background at random times (refill_mean 1s here), from
// every relay and exit it may pick. Then:
//
//   - a node that is not one of the client's entry guards saw every
//     purchase request (quote and mint) arrive through a circuit, from a
//     peer and an address that are not the client's; only guards may be
//     bought from directly;
//   - once every balance is filled, the wallet's clock is moved two
//     minutes on and a paid download by curl is made: none of its
//     circuit's middle or exit was bought from in the minute before that
//     circuit (or during it), i.e. the build did not wait for a purchase.
func TestE2EBuyAheadThroughCircuits(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if _, err := regtest.EnsureBinaries(ctx, "", nil); err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	ml := &mintLog{via: map[string][]mint.Via{}}
	clk := &offsetClock{}
	const target = 300
	d := startTestDevnet(t, Options{
		Relays: 4, Exits: 2, Lightning: true, SkipPurchase: true,
		NodeOptions: func(name string) []node.Option {
			if name == "client" {
				return []node.Option{node.WithClock(clk.Now)}
			}
			return ml.options(name)
		},
		Configure: func(name string, cfg *node.Config) {
			if name == "client" {
				cfg.Payments.RefillMean = time.Second
				cfg.Payments.TargetBalanceSat = target
			}
		},
	})
	names := []string{"relay1", "relay2", "relay3", "relay4", "exit1", "exit2"}
	sellers := d.Nodes[:len(names)]

	// The wallet fills every balance on its own.
	var last node.WalletStatus
	err := poll(ctx, func() bool {
		ws, err := d.Client.WalletStatus()
		if err != nil {
			return false
		}
		last = ws
		for _, n := range sellers {
			if b := ws.Balances[n.ID().String()]; b.Available < target/2 || b.Pending != 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("the wallet did not buy ahead from every node: %+v", last.Balances)
	}

	client := d.Client.ID()
	clientAddrs := map[string]bool{}
	for _, a := range d.Client.Host().Addrs() {
		if na, err := manet.ToNetAddr(a); err == nil {
			clientAddrs[na.String()] = true
		}
	}
	guards := map[peer.ID]bool{}
	for _, g := range d.Client.Discovery().Guards() {
		guards[g.Peer] = true
	}
	throughCircuit := map[string]int{}
	for i, name := range names {
		n := sellers[i]
		vias := ml.get(name)
		if len(vias) < 2 {
			t.Errorf("%s: its mint saw %d requests, want at least a quote and a mint", name, len(vias))
		}
		if guards[n.ID()] {
			continue // a guard may be bought from directly: it sees the client's address anyway
		}
		for _, v := range vias {
			if !v.Circuit {
				t.Errorf("%s (not a guard): a purchase request arrived on a direct stream from %s", name, v.Peer)
			}
			if v.Peer == client {
				t.Errorf("%s (not a guard): its mint saw the client's peer ID", name)
			}
			if v.Addr != nil {
				if na, err := manet.ToNetAddr(v.Addr); err == nil && clientAddrs[na.String()] {
					t.Errorf("%s (not a guard): its mint saw the client's address %s", name, na)
				}
			}
			if v.Circuit && v.Peer != client {
				throughCircuit[name]++
			}
		}
	}
	t.Logf("%d guards; requests through circuits per node: %v", len(guards), throughCircuit)
	if throughCircuit["exit1"] == 0 || throughCircuit["exit2"] == 0 {
		t.Errorf("no purchase from an exit through a circuit: %v", throughCircuit)
	}
	if len(throughCircuit) < 3 {
		t.Errorf("want purchases through circuits from both exits and a non-guard relay: %v", throughCircuit)
	}

	// Two minutes later (wallet clock), a paid download.
	clk.Advance(2 * time.Minute)
	use := clk.Now()
	const size = 5 << 20
	out := tempFile(t, "ahead")
	mustCurl(ctx, t, "--max-time", "120", "--socks5-hostname", d.Client.SOCKSAddr().String(),
		"--proxy-user", "ahead:1", "-o", out, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, size))
	if got, n := fileSum(t, out); n != size || got != demoSum(t, size) {
		t.Fatalf("download: %d bytes, sha256 %x; want %d bytes of DemoBytes", n, got, size)
	}
	c, ok := circuitFor(d.Client, "ahead")
	if !ok {
		t.Fatalf("no circuit for the download: %+v", d.Client.Circuits())
	}
	ps, err := d.Client.WalletStatus()
	if err != nil {
		t.Fatal(err)
	}
	events := purchaseEvents(t, d)
	for _, hop := range c.Path[1:] {
		for _, p := range events {
			if p.Node.String() == hop && !p.Created.Before(use.Add(-time.Minute)) {
				t.Errorf("hop %s was bought from at %v, within the minute before its first circuit (%v)", hop, p.Created, use)
			}
		}
		if b := ps.Balances[hop]; b.Available+b.Reserved == 0 {
			t.Errorf("hop %s: no vouchers held", hop)
		}
	}
	t.Logf("%d purchases in all; circuit %v", len(events), c.Path)
}

// purchaseEvents is every purchase the client's wallet made.
func purchaseEvents(t *testing.T, d *Devnet) []wallet.Purchase {
	t.Helper()
	ws, err := d.Client.WalletStatus()
	if err != nil {
		t.Fatal(err)
	}
	return ws.RecentPurchases
}

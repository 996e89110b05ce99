package devnet

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/node"
)

// TestE2EPaidCost: ten 50 MiB downloads in a row by curl through a devnet
// with real Lightning payments, each with fresh SOCKS credentials (a new
// circuit each, as bitcoind's -proxyrandomize makes), must all arrive
// byte-exact, and what the client paid the hops is compared with what
// they carried at their advertised prices (client status: per node, bytes
// carried and sats paid). The target is 110%, not met: measured
// 1.12–1.15× with top-up prepayment and 1.23–1.27× since hops are paid in
// the handshake (the allowance kept ahead, up to 4 MiB plus in-flight per
// hop, is paid and unused when each circuit ends, and purchase circuits
// pay their hops too); 1.17–1.26× with the wallet's small vouchers (on
// their own and merged with main, whose own runs gave 1.19–1.20×), so
// the test holds the line at 1.30× against regressions and logs the
// ratio (1.16–1.21× with the 1.5 MiB prepay and bulk top-ups, 4 runs).
// Then a bitcoind-like workload on the same network — 50 short isolated
// connections and one 50 MiB download — whose sats paid against the
// advertised prices must stay within 8× (target 1.10×): each new circuit
// prepays 1.5 MiB per hop, 2 sats at a relay and 4 at an exit, for a few
// KiB (PROTOCOL.md §5.3); measured 9.0–9.9× when 2 MiB prepays were paid
// with 8- and 16-sat vouchers, 5.1–7.8× since the wallet keeps small
// vouchers for them (VOUCHERS.md §4), 4.0–6.6× with the 1.5 MiB prepay
// and top-ups that leave the small vouchers to prepays (4 runs; 5.8× and
// 7.3× for the baseline in the same session). It also logs the payments
// the hops credited, as TOPUPs per 100 MB carried.
//
// With CO_INFUSE_PAID_BENCH=1 the same ten downloads then run through an
// unpaid devnet in the same test, and the throughput ratio paid/unpaid is
// logged (measured, not asserted).
func TestE2EPaidCost(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	if _, err := regtest.EnsureBinaries(ctx, "", nil); err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	const target = 600
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2, Lightning: true,
		Configure: func(name string, cfg *node.Config) {
			if name == "client" {
				cfg.Payments.TargetBalanceSat = target
				cfg.Payments.DailyBudgetSat = 50_000 // this test measures cost, not the budget
				cfg.Payments.RefillMean = 2 * time.Second
				// Ten downloads and 50 short connections open 60
				// circuits within a minute when downloads are fast:
				// this test measures cost, not the new-circuit cap.
				cfg.Payments.MaxNewCircuitsPerMinute = 600
			}
		}})
	// Wait for the balances bought ahead, so no download waits on them.
	var last node.WalletStatus
	if err := poll(ctx, func() bool {
		ws, err := d.Client.WalletStatus()
		if err != nil {
			return false
		}
		last = ws
		for _, n := range d.Nodes[:len(d.Nodes)-1] {
			if b := ws.Balances[n.ID().String()]; b.Available < target/2 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("balances not bought ahead: %+v", last.Balances)
	}
	prices := map[string]uint64{}
	for _, n := range d.Nodes[:len(d.Nodes)-1] {
		cfg := n.Config()
		var p uint64
		for _, r := range cfg.Roles {
			p = max(p, cfg.Discovery.PriceSatPerMB[r])
		}
		prices[n.ID().String()] = p
	}
	const size = 50 << 20
	paidRate := downloads(ctx, t, d, "cost", 10, size)
	paid, atPrice, carried := costOf(t, d, prices)
	pays, hops := paymentsOf(d)
	ratio := float64(paid) / atPrice
	t.Logf("ten 50 MiB downloads: paid %d sats for %d bytes carried, %.1f sats at the advertised prices: %.3f× (payload: %.3f×); %.1f MB/s",
		paid, carried, atPrice, ratio, float64(paid)/payloadAt(10*size, prices, d), paidRate/1e6)
	t.Logf("ten 50 MiB downloads: %d payments at the hops for %d circuit hops: about %.1f TOPUPs per 100 MB carried",
		pays, hops, float64(pays-min(pays, hops))/(float64(carried)/1e8))
	if ratio > 1.30 {
		t.Errorf("paid %.3f× the advertised prices for what the hops carried, want ≤ 1.30 (target 1.10)", ratio)
	}

	// bitcoind-like: 50 short isolated connections, then one 50 MiB download.
	host, port := hostPort(t, d.WebAddr)
	for i := range 50 {
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		if n, err := socksGet(cctx, d, fmt.Sprintf("btc-%d", i), host, port, 1000); err != nil || n != 1000 {
			ccancel()
			ws, _ := d.Client.WalletStatus()
			t.Fatalf("short connection %d: %d bytes, %v (client wallet balances: %+v)", i, n, err, ws.Balances)
		}
		ccancel()
	}
	downloads(ctx, t, d, "btc-bulk", 1, size)
	paid2, atPrice2, carried2 := costOf(t, d, prices)
	pays2, hops2 := paymentsOf(d)
	t.Logf("bitcoind-like workload: %d payments at the hops for %d circuit hops: about %.1f TOPUPs per 100 MB carried",
		pays2-pays, hops2-hops, float64((pays2-pays)-min(pays2-pays, hops2-hops))/(float64(carried2-carried)/1e8))
	ratio2 := float64(paid2-paid) / (atPrice2 - atPrice)
	t.Logf("bitcoind-like workload (50 short connections + 50 MiB): paid %d sats for %d bytes carried, %.1f at the advertised prices: %.2f× (%.2f sat/MB carried)",
		paid2-paid, carried2-carried, atPrice2-atPrice, ratio2, float64(paid2-paid)/(float64(carried2-carried)/1e6))
	if ratio2 > 8 {
		t.Errorf("bitcoind-like workload: paid %.2f× the advertised prices for what the hops carried, want ≤ 8 (target 1.10)", ratio2)
	}

	if os.Getenv("CO_INFUSE_PAID_BENCH") == "" {
		return
	}
	u := startTestDevnet(t, Options{Relays: 3, Exits: 2})
	unpaidRate := downloads(ctx, t, u, "cost", 10, size)
	t.Logf("throughput, ten 50 MiB downloads on fresh circuits: paid %.1f MB/s, unpaid %.1f MB/s: paid/unpaid %.3f",
		paidRate/1e6, unpaidRate/1e6, paidRate/unpaidRate)
}

// downloads fetches n files of size bytes by curl, each with fresh SOCKS
// credentials, checks each byte for byte and returns the bytes per second
// of the whole run.
func downloads(ctx context.Context, t *testing.T, d *Devnet, user string, n int, size int64) float64 {
	t.Helper()
	start := time.Now()
	for i := range n {
		out := tempFile(t, fmt.Sprintf("%s-%d", user, i))
		r := runCurl(ctx, t, "--max-time", "180", "--socks5-hostname", d.Client.SOCKSAddr().String(),
			"--proxy-user", fmt.Sprintf("%s-%d:1", user, i), "-o", out, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, size))
		if r.code != 0 {
			t.Fatalf("download %d of %d: curl %v", i+1, n, r)
		}
		if got, m := fileSum(t, out); m != size || got != demoSum(t, size) {
			t.Fatalf("download %d: %d bytes, sha256 %x; want %d bytes of DemoBytes", i+1, m, got, size)
		}
		os.Remove(out)
	}
	return float64(int64(n)*size) / time.Since(start).Seconds()
}

// costOf sums, over the client's per-node figures (open and closed
// circuits), the sats paid, the same bytes carried at each node's
// advertised price, and the bytes carried. It waits for top-ups in flight
// to settle (the figures stop changing).
func costOf(t *testing.T, d *Devnet, prices map[string]uint64) (paid uint64, atPrice float64, carried uint64) {
	t.Helper()
	for _, ns := range d.Client.Status().Client.Nodes {
		t.Logf("node %s (%d sat/MB): %d circuits, %d bytes carried, %d sats paid", ns.Peer, prices[ns.Peer], ns.Circuits, ns.BytesCarried, ns.SatsPaid)
		paid += ns.SatsPaid
		carried += ns.BytesCarried
		atPrice += float64(ns.BytesCarried) * float64(prices[ns.Peer]) / 1e6
	}
	return paid, atPrice, carried
}

// paymentsOf is the payments (handshakes and TOPUPs) the hops of d
// credited, and the circuit hops the client built through them.
func paymentsOf(d *Devnet) (payments, hops uint64) {
	for _, n := range d.Nodes[:len(d.Nodes)-1] {
		if rs := n.Status().Relay; rs != nil {
			payments += rs.Payments
		}
	}
	for _, ns := range d.Client.Status().Client.Nodes {
		hops += uint64(ns.Circuits)
	}
	return payments, hops
}

// payloadAt is bytes of payload at the price of a 3-hop path of this
// devnet (one exit, two relays).
func payloadAt(bytes int64, prices map[string]uint64, d *Devnet) float64 {
	var relay, exit uint64
	for _, n := range d.Nodes[:len(d.Nodes)-1] {
		p := prices[n.ID().String()]
		if n.Config().Has(node.RoleExit) {
			exit = p
		} else {
			relay = p
		}
	}
	return float64(bytes) * float64(2*relay+exit) / 1e6
}

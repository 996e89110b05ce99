package devnet

import (
	"context"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

// TestE2EMempoolPaid runs delivery nodes in a Lightning devnet: the
// delivery nodes sit in front of Lightning's own btcd, sell vouchers like
// every hop, and are paid for the mempool streams they serve (their ledger
// counts sessions in the role "mempool" and sats redeemed for them).
func TestE2EMempoolPaid(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	if _, err := regtest.EnsureBinaries(ctx, "", nil); err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	d := startTestDevnet(t, Options{Relays: 3, Exits: 1, Mempool: 3, RPCListen: "127.0.0.1:0", WebListen: "off", Lightning: true})
	if d.Chain != d.LN {
		t.Fatal("delivery nodes are not behind Lightning's btcd")
	}
	direct := directBtcd(t, d.Chain)
	key := newTestKey(t)
	key.fund(ctx, t, d.Chain, direct, 4)
	rpc := coinfuseRPC(t, d)
	for range 2 {
		tx := key.spendOne(t)
		want := tx.TxHash().String()
		if id, err := sendRaw(rpc, txHex(t, tx)); err != nil || id != want {
			t.Fatalf("sendrawtransaction through a paid devnet: %q, %v", id, err)
		}
		if !inMempool(direct, want) {
			t.Fatal("accepted but not in btcd's mempool")
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	defer pcancel()
	if err := poll(pctx, func() bool { q, _ := d.Client.Mempool().Queued(); return len(q) == 0 }); err != nil {
		t.Fatalf("outbox not drained: %v", err)
	}
	checkOrigins(t, d, 2)
	var sessions uint64
	for _, n := range d.Nodes {
		st := n.Status()
		if st.Relay == nil || st.Relay.Delivery == nil {
			continue
		}
		r := st.Relay.ByRole["mempool"]
		t.Logf("delivery node %s: mempool sessions %d, %d bytes carried, %d sats earned", n.ID(), r.SessionsTotal, r.BytesCarried, r.SatsEarned)
		sessions += r.SessionsTotal
		if r.SessionsTotal > 0 && r.SatsEarned == 0 {
			t.Errorf("delivery node %s served %d mempool sessions but earned nothing", n.ID(), r.SessionsTotal)
		}
	}
	if sessions == 0 {
		t.Fatal("no delivery node counted a mempool session")
	}
}

package devnet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

// TestE2EPaidDownload runs the devnet with payments on (a regtest btcd and
// two lnd, vouchers bought over a real Lightning channel) and downloads
// 20 MiB with curl through it: the bytes arrive intact and the hops of the
// circuit that carried them were paid from the client's voucher balances.
func TestE2EPaidDownload(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if _, err := regtest.EnsureBinaries(ctx, "", nil); err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2, Lightning: true})
	before, err := d.Client.WalletStatus()
	if err != nil {
		t.Fatalf("wallet: %v", err)
	}

	const size = 20 << 20
	out := tempFile(t, "paid")
	mustCurl(ctx, t, "--max-time", "120", "--socks5-hostname", d.Client.SOCKSAddr().String(),
		"--proxy-user", "paid:1", "-o", out, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, size))
	if got, n := fileSum(t, out); n != size || got != demoSum(t, size) {
		t.Fatalf("paid download: %d bytes, sha256 %x; want %d bytes of DemoBytes", n, got, size)
	}
	c, ok := circuitFor(d.Client, "paid")
	if !ok {
		t.Fatalf("no circuit for the paid download: %+v", d.Client.Circuits())
	}
	checkPath(t, d, c, 3)

	after, err := d.Client.WalletStatus()
	if err != nil {
		t.Fatalf("wallet: %v", err)
	}
	for _, id := range c.Path {
		b0, b1 := before.Balances[id], after.Balances[id]
		held0 := b0.Available + b0.Reserved + b0.Pending
		held1 := b1.Available + b1.Reserved + b1.Pending
		t.Logf("hop %s: before %+v, after %+v", id, b0, b1)
		if held1+before.BudgetUsedSat >= held0+after.BudgetUsedSat && b1.Available >= b0.Available {
			t.Errorf("hop %s carried %d bytes but nothing was spent on it: balance %+v then %+v, budget used %d then %d",
				id, size, b0, b1, before.BudgetUsedSat, after.BudgetUsedSat)
		}
	}
}

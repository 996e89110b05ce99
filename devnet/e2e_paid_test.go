package devnet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/node"
)

// TestE2EPaidDownload runs the devnet with payments on (a regtest btcd and
// two lnd, vouchers bought over a real Lightning channel) and downloads
// 20 MiB with curl through it: the bytes arrive intact, the hops of the
// circuit that carried them were paid from the client's voucher balances,
// and `co-infuse status --json` on the client reports, per hop, the bytes
// and sats that each hop's own status reports carrying and earning.
func TestE2EPaidDownload(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if _, err := regtest.EnsureBinaries(ctx, "", nil); err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	bin := buildCLI(ctx, t)
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

	checkStatusAgrees(ctx, t, d, bin)
}

// checkStatusAgrees compares, node by node, what the client's `co-infuse
// status --json` says it sent through and paid each node (client.nodes:
// open and closed circuits) with what that node's own status says it
// carried and earned. Every circuit in this devnet is the client's, so the
// two must be equal; cells and top-ups still in flight settle within the
// deadline.
func checkStatusAgrees(ctx context.Context, t *testing.T, d *Devnet, bin string) {
	t.Helper()
	statusOf := func(n *node.Node) node.Status {
		code, out, errOut := runCLI(ctx, t, bin, "status", "--json", "--datadir", n.Config().DataDir)
		if code != 0 {
			t.Fatalf("co-infuse status --json --datadir %s: exit %d: %s", n.Config().DataDir, code, errOut)
		}
		var st node.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return st
	}
	type figures struct{ bytes, sats uint64 }
	var last string
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := poll(pctx, func() bool {
		client := statusOf(d.Client)
		if client.Client == nil {
			t.Fatalf("client status has no client section: %+v", client)
		}
		fromClient := map[string]figures{}
		for _, ns := range client.Client.Nodes {
			fromClient[ns.Peer] = figures{ns.BytesCarried, ns.SatsPaid}
		}
		var diffs []string
		for _, n := range d.Nodes[:len(d.Nodes)-1] {
			st := statusOf(n)
			if st.Relay == nil {
				t.Fatalf("%s: status has no relay section", n.ID())
			}
			want := fromClient[n.ID().String()]
			if st.Relay.BytesCarried != want.bytes || st.Relay.SatsEarned != want.sats {
				diffs = append(diffs, fmt.Sprintf("%s: hop says %d bytes, %d sats; client says %d bytes, %d sats",
					n.ID(), st.Relay.BytesCarried, st.Relay.SatsEarned, want.bytes, want.sats))
			}
		}
		last = strings.Join(diffs, "\n")
		return len(diffs) == 0
	})
	if err != nil {
		t.Fatalf("client status and hop status disagree:\n%s", last)
	}
	paidHop := false
	for _, n := range d.Nodes[:len(d.Nodes)-1] {
		if st := statusOf(n); st.Relay.SatsEarned > 0 && st.Relay.BytesCarried >= 20<<20 {
			paidHop = true
		}
	}
	if !paidHop {
		t.Errorf("no hop reports carrying the 20 MiB download for sats")
	}
}

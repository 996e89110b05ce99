package dockertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// buySat is what the client buys from each relay and exit before the first
// download: far more than the downloads below cost (a 2 MiB prepay and a
// few MB at a few sat/MB per hop), so no purchase happens after it.
const buySat = 200

// TestContainerPaidNetwork runs compose.devnet.yml with payments on
// (compose.lightning.yml): btcd and two lnd in containers on a network of
// their own, a funded channel from the payer lnd (the client's) to the
// payee lnd (every relay's and exit's, its tls.cert and admin.macaroon
// mounted read-only), 6 paid relays and exits on 3 networks. The client
// buys vouchers from all six over Lightning (its automatic purchase and
// pre-built circuits are off, so its wallet moves only when the test
// makes it), and curl downloads through a paid 3-hop circuit, byte-exact.
//
// Then `docker stop` of the client (SIGTERM): it exits 0, and after
// `docker start` its wallet (status --json: per node the sats available,
// reserved, pending, expired and spent, and the count of vouchers held) is
// exactly what it was before the stop; the next download works and pays;
// no hop ever reports a voucher already spent; and for every node the
// sats the client's wallet records as spent there equal the sats that
// node reports earning (relays and exits are never restarted).
//
// Then the same stop with vouchers certainly reserved: every exit frozen
// while a new circuit's exit handshake holds its prepay (stopMidPayment).
//
// Then `docker kill` (SIGKILL) of the client mid-download, the crash
// case: after `docker start` the vouchers reserved at the crash are
// settled (nothing stays reserved), spent still equals earned at every
// node, no sat bought is lost (per node, available + reserved + pending +
// expired + spent is what it was before), and the next download works.
func TestContainerPaidNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	begin := time.Now()
	ln := startLightning(t, ctx)
	t.Logf("regtest btcd + 2 lnd with an active channel in containers: %v", time.Since(begin).Round(time.Second))
	c := startNet(t, ctx, netOpts{
		files: []string{"compose.lightning.yml"},
		env: append(ln.composeEnv(),
			"CO_INFUSE_PAYMENTS_AUTO_BUY=false",
			"CO_INFUSE_CIRCUIT_PREEMPTIVE=-1",
		),
		noWarmup: true,
	})
	t.Logf("co-infuse network up: %v", time.Since(begin).Round(time.Second))

	// Vouchers from every relay and exit, bought over Lightning.
	var sellers []peer.ID
	for id := range c.home {
		sellers = append(sellers, id)
	}
	slices.Sort(sellers)
	for _, id := range sellers {
		waitFor(t, ctx, "buying vouchers from "+c.home[id].service, func() (bool, error) {
			_, err := c.exec(ctx, "client", "/co-infuse", "wallet", "buy", "--node", id.String(), "--sats", strconv.Itoa(buySat))
			return err == nil, err
		})
	}
	bought := c.walletBalances(ctx)
	for _, id := range sellers {
		if b := bought[id.String()]; b.Available < buySat {
			t.Fatalf("after buying %d sats from %s the wallet holds %+v", buySat, c.home[id].service, b)
		}
	}
	t.Logf("bought %d sats from each of %d nodes: %v", buySat, len(sellers), time.Since(begin).Round(time.Second))

	// A paid download.
	const n = 5_000_000
	c.paidDownload(ctx, "paid", n)
	held := c.settled(ctx) // per node, everything bought, in any state

	// docker stop, docker start: the wallet is what it was.
	before := c.walletBalances(ctx)
	client := c.container(ctx, "client")
	docker(t, ctx, "stop", "-t", "15", client) // compose.devnet.yml's stop_grace_period
	if code := docker(t, ctx, "inspect", "-f", "{{.State.ExitCode}}", client); code != "0" {
		t.Fatalf("the client exited %s on docker stop, want 0", code)
	}
	docker(t, ctx, "start", client)
	after := c.walletBalances(ctx)
	if !balancesEqual(before, after) {
		t.Fatalf("the wallet changed across docker stop/start:\nbefore %+v\nafter  %+v", before, after)
	}
	t.Logf("docker stop/start: wallet unchanged (%d nodes, %d vouchers held)", len(after), vouchersHeld(after))
	c.paidDownload(ctx, "afterstop", n)
	c.checkConserved(ctx, held)
	t.Logf("stop case done: %v", time.Since(begin).Round(time.Second))

	c.stopMidPayment(ctx, held)
	t.Logf("mid-payment stop case done: %v", time.Since(begin).Round(time.Second))

	// docker kill mid-download: the crash case.
	curlC := c.container(ctx, "curl")
	slow := exec.CommandContext(ctx, "docker", append([]string{"exec", curlC},
		// A killed container's reset can be lost with its network
		// namespace; a real user's curl gives up on a stalled transfer, so
		// this one does too, after 20 s below 1 kB/s.
		curlArgs("crash", 200_000_000, 5*time.Minute, "--limit-rate", "2M", "--speed-limit", "1000", "--speed-time", "20")...)...)
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- slow.Wait() }()
	waitFor(t, ctx, "the download to crash under way", func() (bool, error) {
		_, ok := c.circuit(ctx, "crash", 3_000_000) // past the 2 MiB prepay: top-ups run
		return ok, nil
	})
	docker(t, ctx, "kill", client)
	select {
	case err := <-slowDone:
		if err == nil {
			t.Fatal("curl succeeded although the client was killed")
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("curl still running 3 minutes after the client was killed")
	}
	docker(t, ctx, "start", client)
	c.checkConserved(ctx, held)
	c.paidDownload(ctx, "aftercrash", n)
	c.checkConserved(ctx, held)
	t.Logf("crash case done; whole test %v", time.Since(begin).Round(time.Second))
}

// stopMidPayment is `docker stop` of the client while vouchers are
// certainly reserved: small downloads warm the relays' links to the
// exits, every exit is frozen (`docker pause`) and downloads on fresh
// circuits start until one's exit handshake holds its prepay; once
// the client's own status shows those vouchers reserved it is stopped and
// started again with the exits still frozen: the reservation survives
// (parked as of unknown outcome, nothing lost, no node's balance moved).
// Then the exits thaw: each frozen exit may still process the handshake
// queued in its socket (a stale redemption) before or after the client
// settles those vouchers with its mint; either way no voucher is accepted
// twice, spent equals earned at every node and no sat bought is lost
// (checkConserved), and the next paid download works.
func (c *cnet) stopMidPayment(ctx context.Context, held map[string]uint64) {
	t := c.t
	t.Helper()
	var exits []string
	isExit := map[string]bool{}
	for id, h := range c.home {
		if strings.HasPrefix(h.service, "exit-") {
			exits = append(exits, c.container(ctx, h.service))
			isExit[id.String()] = true
		}
	}
	if len(exits) == 0 {
		t.Fatal("no exit in the network")
	}
	frozen := true
	thaw := func() {
		if !frozen {
			return
		}
		frozen = false
		for _, e := range exits {
			// A background context: the thaw must happen even when the
			// test's has run out, or compose down hangs on paused
			// containers.
			tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, _ = run(tctx, "docker", "unpause", e)
			cancel()
		}
	}
	defer thaw()
	// Warm links: a few small downloads on fresh circuits open the relays'
	// links to the exits, so that a later extension to a frozen exit is
	// delivered into its socket (where it stays unread, its vouchers with
	// it) instead of failing on opening a link before any voucher left.
	for i := range 8 {
		_, _ = c.download(ctx, fmt.Sprintf("warm%d%s", i, uniq()), 100_000, time.Minute)
	}
	for _, e := range exits {
		docker(t, ctx, "pause", e)
	}
	reserved := func(bs map[string]wallet.Balance) uint64 {
		var r uint64
		for id, b := range bs {
			if isExit[id] {
				r += b.Reserved
			}
		}
		return r
	}
	// Downloads on fresh circuits, one after the other, until one's exit
	// handshake is stuck in a frozen exit with its prepay: the wallet
	// then shows those vouchers reserved (or of unknown outcome, counted
	// as reserved) at that exit. A path whose middle had no link to its
	// exit fails before any voucher leaves; the next try picks another.
	curlC := c.container(ctx, "curl")
	var hangDone chan error
	try := func() {
		hang := exec.CommandContext(ctx, "docker", append([]string{"exec", curlC}, curlArgs("frozen"+uniq(), 5_000_000, 2*time.Minute)...)...)
		if err := hang.Start(); err != nil {
			t.Fatal(err)
		}
		hangDone = make(chan error, 1)
		go func() { hangDone <- hang.Wait() }()
	}
	try()
	tries := 1
	var before map[string]wallet.Balance
	wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
	defer wcancel()
	waitFor(t, wctx, "vouchers reserved for a frozen exit's handshake", func() (bool, error) {
		before = c.walletBalances(ctx)
		if reserved(before) > 0 {
			return true, nil
		}
		select {
		case <-hangDone:
			try()
			tries++
		default:
		}
		return false, fmt.Errorf("nothing reserved at a frozen exit after %d downloads", tries)
	})
	t.Logf("vouchers reserved at a frozen exit after %d downloads", tries)
	client := c.container(ctx, "client")
	docker(t, ctx, "stop", "-t", "15", client)
	if code := docker(t, ctx, "inspect", "-f", "{{.State.ExitCode}}", client); code != "0" {
		t.Fatalf("the client exited %s on docker stop with a handshake in flight, want 0", code)
	}
	docker(t, ctx, "start", client)
	after := c.walletBalances(ctx)
	if got, want := reserved(after), reserved(before); got != want {
		t.Fatalf("frozen exits' reserved sats went from %d to %d across docker stop/start, want unchanged:\nbefore %+v\nafter  %+v", want, got, before, after)
	}
	for id, b := range before {
		a := after[id]
		if a.Available+a.Reserved+a.Spent != b.Available+b.Reserved+b.Spent {
			t.Fatalf("node %s: the wallet moved across docker stop/start with exits frozen:\nbefore %+v\nafter  %+v", id, b, a)
		}
	}
	t.Logf("docker stop/start with %d sats reserved at frozen exits: reservation kept", reserved(after))
	thaw()
	select {
	case <-hangDone: // curl failed when the client stopped, or finished later
	case <-time.After(3 * time.Minute):
		t.Fatal("curl still running 3 minutes after the client was stopped")
	}
	c.checkConserved(ctx, held)
	settledBal := c.walletBalances(ctx)
	var spentBefore, spentAfter uint64
	for id := range isExit {
		spentBefore += after[id].Spent
		spentAfter += settledBal[id].Spent
	}
	how := "swapped for fresh vouchers at its mint (the late redemption refused)"
	if spentAfter > spentBefore {
		how = fmt.Sprintf("redeemed by the thawed exit (%d sats), so settled as spent", spentAfter-spentBefore)
	}
	t.Logf("after the thaw the reservation was %s; spent = earned at every node", how)
	c.paidDownload(ctx, "afterthaw", 5_000_000)
	c.checkConserved(ctx, held)
}

// exec runs a command in service's container and returns its stdout.
func (c *cnet) exec(ctx context.Context, service string, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"exec", c.container(ctx, service)}, args...)...)
}

// walletBalances waits for the client to answer with its wallet and
// returns its balances by node.
func (c *cnet) walletBalances(ctx context.Context) map[string]wallet.Balance {
	c.t.Helper()
	var out map[string]wallet.Balance
	waitFor(c.t, ctx, "the client's wallet in its status", func() (bool, error) {
		st, err := c.status(ctx)
		if err != nil {
			return false, err
		}
		if st.Client == nil || st.Client.Wallet == nil {
			return false, fmt.Errorf("no wallet in the client's status")
		}
		out = st.Client.Wallet.Balances
		return true, nil
	})
	return out
}

// paidDownload downloads n bytes with SOCKS username user, byte-exact,
// and checks that every hop of the circuit that carried them was paid.
func (c *cnet) paidDownload(ctx context.Context, user string, n int64) {
	c.t.Helper()
	waitFor(c.t, ctx, "a paid download as "+user, func() (bool, error) {
		u := user + uniq()
		if _, err := c.download(ctx, u, n, 2*time.Minute); err != nil {
			return false, err
		}
		hops, ok := c.circuitStatus(ctx, u, uint64(n))
		if !ok {
			return false, fmt.Errorf("no circuit for %s in the client's status", u)
		}
		c.hopHomes(hopsOf(hops))
		for i, h := range hops.Hops {
			if h.SatsPaid == 0 {
				c.t.Fatalf("hop %d (%s) of the paid circuit was paid nothing: %+v", i+1, h.Peer, h)
			}
		}
		return true, nil
	})
}

// circuitStatus is circuit with the whole CircuitStatus.
func (c *cnet) circuitStatus(ctx context.Context, user string, min uint64) (node.CircuitStatus, bool) {
	st, err := c.status(ctx)
	if err != nil || st.Client == nil {
		return node.CircuitStatus{}, false
	}
	var best node.CircuitStatus
	var most uint64
	found := false
	for _, ci := range st.Client.Circuits {
		if ci.Isolation != user || len(ci.Hops) == 0 {
			continue
		}
		if b := ci.Hops[len(ci.Hops)-1].BytesCarried; b >= min && (!found || b > most) {
			best, most, found = ci, b, true
		}
	}
	return best, found
}

func hopsOf(c node.CircuitStatus) []node.HopStatus { return c.Hops }

// relayEarned is every relay's and exit's own status: sats earned by peer.
func (c *cnet) relayEarned(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	for id, h := range c.home {
		raw, err := c.exec(ctx, h.service, "/co-infuse", "status", "--json")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.service, err)
		}
		var st node.Status
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			return nil, fmt.Errorf("%s: %w", h.service, err)
		}
		if st.Relay == nil {
			return nil, fmt.Errorf("%s: no relay section in its status", h.service)
		}
		out[id.String()] = st.Relay.SatsEarned
	}
	return out, nil
}

// settled waits until nothing in the client's wallet is reserved or
// pending and, for every node, the sats the wallet records as spent there
// equal what the node reports earning (top-ups in flight settle, vouchers
// of unknown outcome are settled with the node's mint). It fails the test
// on any hop that reported a voucher already spent, and returns, per
// node, all the sats bought there: available + expired + spent.
func (c *cnet) settled(ctx context.Context) map[string]uint64 {
	c.t.Helper()
	var total map[string]uint64
	var diff string
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		st, err := c.status(pctx)
		var earned map[string]uint64
		if err == nil {
			earned, err = c.relayEarned(pctx)
		}
		if err == nil && st.Client != nil && st.Client.Wallet != nil {
			for _, ci := range st.Client.Circuits {
				for _, h := range ci.Hops {
					if strings.Contains(h.PayProblem, "spent") {
						c.t.Fatalf("hop %s of circuit %s (%s) reports %q: a voucher was offered twice", h.Peer, strconv.FormatUint(ci.ID, 10), ci.Isolation, h.PayProblem)
					}
				}
			}
			total = map[string]uint64{}
			var diffs []string
			for id, e := range earned {
				b := st.Client.Wallet.Balances[id]
				total[id] = b.Available + b.Reserved + b.Pending + b.Expired + b.Spent
				if b.Reserved != 0 || b.Pending != 0 || b.Spent != e {
					diffs = append(diffs, fmt.Sprintf("%s (%s): wallet %+v, node earned %d", id, c.home[mustDecode(id)].service, b, e))
				}
			}
			diff = strings.Join(diffs, "\n")
			if len(diffs) == 0 {
				return total
			}
		} else if err != nil {
			diff = err.Error()
		}
		select {
		case <-pctx.Done():
			c.t.Fatalf("the client's wallet and the nodes' earnings did not settle: %v\n%s", pctx.Err(), diff)
		case <-time.After(time.Second):
		}
	}
}

func mustDecode(s string) peer.ID {
	id, _ := peer.Decode(s)
	return id
}

// checkConserved waits for the wallet to settle (settled) and checks that
// every node's sats bought are what they were (held): none lost, none
// bought since.
func (c *cnet) checkConserved(ctx context.Context, held map[string]uint64) {
	c.t.Helper()
	now := c.settled(ctx)
	for id, was := range held {
		if now[id] != was {
			c.t.Errorf("node %s (%s): %d sats bought in all, was %d", id, c.home[mustDecode(id)].service, now[id], was)
		}
	}
}

func balancesEqual(a, b map[string]wallet.Balance) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func vouchersHeld(m map[string]wallet.Balance) int {
	n := 0
	for _, b := range m {
		n += b.Vouchers
	}
	return n
}

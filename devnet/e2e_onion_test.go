package devnet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// onionHost derives a well-formed v3 onion host (rend-spec-v3 §6: base32
// of pubkey | checksum | version 3) from a fixed-seed ed25519 key.
func onionHost(seed byte) string {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return onionaddr.Encode(ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
}

// hopSessions is what the relays and exits of d have seen: circuit
// sessions of any role, and sessions that carried an exit BEGIN, per node.
func hopSessions(d *Devnet) (all, exit map[string]uint64) {
	all, exit = map[string]uint64{}, map[string]uint64{}
	for _, n := range d.Nodes {
		if n == d.Client {
			continue
		}
		st := n.Status()
		if st.Relay == nil {
			continue
		}
		id := n.ID().String()
		all[id] = st.Relay.SessionsTotal
		exit[id] = st.Relay.ByRole["exit"].SessionsTotal
	}
	return all, exit
}

func sameCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestE2EOnionAnsweredByClient: for an onion address with no descriptor
// (nobody published it), the client answers a .onion target itself — SOCKS reply 0xF0 (Tor's "descriptor not
// found") to real curl and on the wire, 0x04 to RESOLVE, 404 to HTTP
// CONNECT, 0xF6 for a bad checksum — and never hands it to the pool's exit
// circuits, so no exit ever sees the name in a BEGIN (no exit session at
// all). Before it can say 0xF0 it asks the responsible HSDirs of the ring
// (rendezvous-role relays, over its own circuits, as Tor's client asks its
// HSDirs): those relays see sessions, which carry the descriptor index,
// never the name. A clearnet fetch afterwards is the control: it does
// build a circuit, and its exit counts an exit session.
func TestE2EOnionAnsweredByClient(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()
	onion := onionHost(1)

	stats0, circuits0 := d.Client.PoolStats(), d.Client.Circuits()
	all0, exit0 := hopSessions(d)
	if len(exit0) != 5 {
		t.Fatalf("status of %d hops, want 5", len(exit0))
	}
	t.Logf("before: pool %+v, %d circuits, hop sessions %v", stats0, len(circuits0), all0)
	// nothingSent fails the test if the client built, claimed or used a
	// pool circuit, or any exit saw a session, since the test began.
	nothingSent := func(after string) {
		t.Helper()
		if stats1 := d.Client.PoolStats(); stats1 != stats0 {
			t.Fatalf("after %s: pool stats moved: %+v -> %+v", after, stats0, stats1)
		}
		if circuits1 := d.Client.Circuits(); len(circuits1) != len(circuits0) {
			t.Fatalf("after %s: circuits %+v -> %+v", after, circuits0, circuits1)
		}
		if all1, exit1 := hopSessions(d); !sameCounts(exit0, exit1) {
			t.Fatalf("after %s: exits saw sessions: all %v -> %v, exit %v -> %v", after, all0, all1, exit0, exit1)
		}
	}

	r := runCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "onion:1", "http://"+onion+"/")
	// curl 7.88 reports a SOCKS5 reply it has no name for as CURLE_PROXY
	// (97) with the code in brackets: 240 is 0xF0.
	if r.code != 97 || !strings.Contains(r.stderr, "(240)") {
		t.Fatalf("curl socks5 to an onion: %v; want exit 97 and SOCKS reply (240)", r)
	}
	nothingSent("curl --socks5-hostname")
	for _, user := range []string{"", "onion-raw"} {
		c, rep, err := socksConnect(ctx, socks, user, "x", onion, 9735)
		if err == nil {
			c.Close()
			t.Fatalf("SOCKS CONNECT to %s (user %q) succeeded", onion, user)
		}
		if rep.rep != 0xF0 {
			t.Fatalf("SOCKS CONNECT to an onion (user %q): reply %#02x (%v), want 0xf0", user, rep.rep, err)
		}
	}
	nothingSent("SOCKS CONNECT")
	if _, rep, _ := socksConnect(ctx, socks, "", "", onion[:55]+"a.onion", 8333); rep.rep != 0xF6 {
		t.Fatalf("SOCKS CONNECT to a bad-checksum onion: reply %#02x, want 0xf6", rep.rep)
	}
	if got := socksResolve(ctx, t, socks, onion); !bytes.Equal(got, []byte{5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("RESOLVE of an onion: got %x, want reply 0x04 and close", got)
	}
	nothingSent("RESOLVE")
	r = runCurl(ctx, t, "--max-time", "60", "-p", "-x", "http://"+d.Client.HTTPAddr().String(), "-w", "%{http_connect}", "http://"+onion+":8333/")
	if r.code != 56 || r.stdout != "404" {
		t.Fatalf("curl -p -x to an onion: %v, CONNECT status %q; want exit 56 and status 404", r, r.stdout)
	}
	nothingSent("HTTP CONNECT")

	// The control: the same client reaches the web server, and then an exit
	// does count a session with a BEGIN, so the counts above could move.
	mustCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "control:1", fmt.Sprintf("http://%s/", d.WebAddr))
	waitFor(ctx, t, "an exit session for the clearnet fetch", func() bool {
		_, exit2 := hopSessions(d)
		return !sameCounts(exit0, exit2)
	})
	if s := d.Client.PoolStats(); s.Built == stats0.Built {
		t.Fatalf("the control fetch built no circuit: %+v", s)
	}
}

// socksResolve sends Tor's SOCKS RESOLVE for host without credentials and
// returns everything the proxy answers before it closes.
func socksResolve(ctx context.Context, t *testing.T, socks, host string) []byte {
	t.Helper()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", socks)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	req := append([]byte{5, 1, 0, 5, 0xF0, 0, 3, byte(len(host))}, host...)
	if _, err := c.Write(append(req, 0, 0)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(c, 64))
	if err != nil {
		t.Fatalf("RESOLVE reply: %v (got %x)", err, got)
	}
	return got
}

package discovery

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPureClientAnswersNothing: a client-mode Service that has fetched
// adverts answers no advert query (own or cached) and registers no
// co-infuse protocol on its host, so identify announces none.
func TestPureClientAnswersNothing(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	hr, pr := loopbackHost(t, nil)
	relay := startService(t, ctx, hr, pr, Config{DHTServer: true, Bootstrap: []peer.AddrInfo{}})
	_ = relay.Publish(ctx, testAdvert(0, 10)) // no DHT peers to provide to; served anyway
	hc, pc := loopbackHost(t, nil)
	client := startService(t, ctx, hc, pc, Config{Bootstrap: []peer.AddrInfo{{ID: hr.ID(), Addrs: hr.Addrs()}}})
	if _, err := client.Lookup(ctx, hr.ID()); err != nil {
		t.Fatal(err)
	}
	for _, p := range hc.Mux().Protocols() {
		if strings.Contains(string(p), "co-infuse") {
			t.Fatalf("client registers %s", p)
		}
	}
	// The relay (or anyone) asks the client for its cached copy of the
	// relay's advert, and for its own: both refused.
	hr.Peerstore().AddAddrs(hc.ID(), hc.Addrs(), time.Hour)
	if _, _, err := relay.request(ctx, peer.AddrInfo{ID: hc.ID()}, hr.ID()); err == nil {
		t.Fatal("client answered a cross-check query")
	}
	if _, _, err := relay.request(ctx, peer.AddrInfo{ID: hc.ID()}, ""); err == nil {
		t.Fatal("client answered an advert query")
	}
}

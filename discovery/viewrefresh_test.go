package discovery

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestViewRefreshFindsLatePublishers: a node that publishes after a
// client's first lookup is found by the client's background view refresh,
// while the client still knows enough to build paths (before
// Config.ViewRefresh, such a node was never looked up again).
func TestViewRefreshFindsLatePublishers(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 60*time.Second)
	mn, nodes := mocknetCluster(t, ctx, 4)
	for i, nd := range nodes[:3] {
		if err := nd.s.Publish(ctx, testAdvert(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: ModePrivate, Bootstrap: []peer.AddrInfo{nodes[0].info()}, ViewRefresh: 40 * time.Millisecond}
	client := startService(t, ctx, h, h.Peerstore().PrivKey(h.ID()), cfg)
	// The first view: this lookup, or the background one when its timer
	// fired first (refreshView then skips the roles it has in flight).
	client.refreshView(ctx)
	for _, nd := range nodes[:3] {
		for {
			if _, ok := client.Cached(nd.h.ID()); ok {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("first lookup missed %s", nd.h.ID())
			case <-time.After(20 * time.Millisecond): // poll under ctx's deadline
			}
		}
	}
	late := nodes[3]
	if err := late.s.Publish(ctx, testAdvert(3, 10)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := client.Cached(late.h.ID()); ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("late publisher never found by the view refresh")
		case <-time.After(20 * time.Millisecond): // poll under ctx's deadline
		}
	}
}

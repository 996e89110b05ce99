package discovery

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestLoopbackClusterFindsEveryAdvert: 12 real libp2p hosts on 127.0.0.1 in
// each mode publish; a fresh client finds every advert with its prices.
func TestLoopbackClusterFindsEveryAdvert(t *testing.T) {
	for _, mode := range []string{ModePrivate, ModeIPFS} {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t, 60*time.Second)
			nodes := cluster(t, ctx, 12, mode, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
			publishAll(t, ctx, nodes)
			wantProto := "/co-infuse/kad/1.0.0"
			if mode == ModeIPFS {
				wantProto = "/ipfs/kad/1.0.0"
			}
			speaks := false
			for _, p := range nodes[3].h.Mux().Protocols() {
				speaks = speaks || string(p) == wantProto
			}
			if !speaks {
				t.Fatalf("server node does not speak %s", wantProto)
			}

			ch, cpriv := loopbackHost(t, nil)
			client := startService(t, ctx, ch, cpriv, Config{Mode: mode, Bootstrap: []peer.AddrInfo{nodes[0].info()}})
			want := map[peer.ID]bool{}
			for _, nd := range nodes {
				want[nd.h.ID()] = true
			}
			got, err := findAll(ctx, client, RoleRelay, want)
			if err != nil {
				t.Fatal(err)
			}
			for i, nd := range nodes {
				ad := got[nd.h.ID()]
				if ad.Price(RoleRelay) != uint64(10+i) || ad.OnionKey[0] != byte(i) {
					t.Fatalf("node %d advert %+v", i, ad)
				}
			}
			exits, err := client.FindExits(ctx, 8333, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(exits) != 4 { // nodes 0, 3, 6, 9
				t.Fatalf("found %d bitcoin exits, want 4", len(exits))
			}
			if e, _ := client.FindExits(ctx, 443, 100); len(e) != 0 {
				t.Fatalf("found %d exits for a port none allows", len(e))
			}
			path, err := client.SelectPath(ctx, PathRequest{Final: RoleExit, Port: 9735})
			if err != nil {
				t.Fatal(err)
			}
			if len(path) != 3 || !path[2].AllowsPort(9735) {
				t.Fatalf("bad path %v", path)
			}
		})
	}
}

package discovery

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestCrossCheckCatchesSplitView: a node shows client A an advert with one
// mint keyset and everyone else another, under the same seq. A cross-check
// through witnesses that fetched the other view catches it; an honest node
// passes the same check.
func TestCrossCheckCatchesSplitView(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	nodes := cluster(t, ctx, 6, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	publishAll(t, ctx, nodes)
	rogue := nodes[5]
	ch, cpriv := loopbackHost(t, nil)

	rogue.s.mu.Lock()
	base := rogue.s.own.signed.Clone()
	rogue.s.mu.Unlock()
	view := func(id string) []byte {
		ad := base.Clone()
		ad.Keysets = []Keyset{{ID: []byte(id), Denominations: []uint64{1}, PublicKeys: [][]byte{[]byte(id)}, NotBefore: time.Unix(0, 0), MintUntil: time.Now().Add(time.Hour), NotAfter: time.Now().Add(time.Hour)}}
		env, err := SignAdvert(&ad, rogue.priv)
		if err != nil {
			t.Fatal(err)
		}
		return framed(env)
	}
	forA, forOthers := view("keyset-for-A"), view("keyset-for-everyone")
	rogue.h.SetStreamHandler(ProtocolAdvert, func(st network.Stream) {
		defer st.Close()
		if st.Conn().RemotePeer() == ch.ID() {
			_, _ = st.Write(forA)
		} else {
			_, _ = st.Write(forOthers)
		}
	})

	// The relays fetch adverts too (they are the witnesses).
	for _, nd := range nodes[:5] {
		if _, err := findAll(ctx, nd.s, RoleRelay, map[peer.ID]bool{rogue.h.ID(): true}); err != nil {
			t.Fatal(err)
		}
	}
	client := startService(t, ctx, ch, cpriv, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	want := map[peer.ID]bool{}
	for _, nd := range nodes {
		want[nd.h.ID()] = true
	}
	got, err := findAll(ctx, client, RoleRelay, want)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[rogue.h.ID()].Keysets[0].ID) != "keyset-for-A" {
		t.Fatal("test setup: client did not get its own view")
	}

	honest := nodes[2].h.ID()
	n, err := client.CrossCheck(ctx, honest, nil)
	if err != nil || n == 0 {
		t.Fatalf("honest node: %d witnesses, err %v", n, err)
	}
	if _, err := client.CrossCheck(ctx, rogue.h.ID(), nil); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("rogue: err = %v, want ErrEquivocation", err)
	}
	for i := 0; i < 30; i++ {
		path, err := client.SelectPath(ctx, PathRequest{Hops: 3, Final: RoleRelay})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range path {
			if a.Peer == rogue.h.ID() {
				t.Fatal("equivocating node still selected")
			}
		}
	}
	if _, err := client.CrossCheck(ctx, rogue.h.ID(), nil); !errors.Is(err, ErrNoAdvert) {
		t.Fatalf("second check: %v, want ErrNoAdvert (advert dropped)", err)
	}
}

// TestAdvertRequestParsing: the handler answers well-formed requests and
// resets malformed or over-long ones.
func TestAdvertRequestParsing(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	nodes := cluster(t, ctx, 2, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	publishAll(t, ctx, nodes)
	srv := nodes[1]
	_, unknown := testKey(t, "unknown")
	tests := []struct {
		name    string
		req     []byte
		wantLen int // -1: expect a reset / read error; 0: empty answer; 1: non-empty
	}{
		{"own advert", nil, 1},
		{"cached copy of an unknown peer", append([]byte{1, byte(len(unknown))}, unknown...), 0},
		{"bad tag", []byte{2, 0}, -1},
		{"length mismatch", []byte{1, 5, 1}, -1},
		{"over-long", make([]byte, maxRequest+1), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := nodes[0].h.NewStream(ctx, srv.h.ID(), ProtocolAdvert)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			_ = st.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = st.Write(tc.req)
			_ = st.CloseWrite()
			var hdr [4]byte
			_, err = io.ReadFull(st, hdr[:])
			n := int(binary.BigEndian.Uint32(hdr[:]))
			switch {
			case tc.wantLen < 0 && err == nil:
				t.Fatalf("answered %d bytes, want a reset", n)
			case tc.wantLen >= 0 && err != nil:
				t.Fatal(err)
			case tc.wantLen == 0 && n != 0, tc.wantLen == 1 && n == 0:
				t.Fatalf("answer of %d bytes", n)
			}
		})
	}
}

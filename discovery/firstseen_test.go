package discovery

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestFirstSeen: FirstSeen reports when each peer's advert was first
// verified (a newer advert does not move it), nothing for a peer without
// a record, since as the earliest of them, and the same after a restart
// on the same cache directory (the HSDir age gate depends on it).
func TestFirstSeen(t *testing.T) {
	dir := t.TempDir()
	h, _ := loopbackHost(t, nil)
	now := testEpoch
	open := func() *Service {
		s, err := New(h, nil, Config{CacheDir: dir, Now: func() time.Time { return now }, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	if first, since, at := s.FirstSeen(nil); len(first) != 0 || !since.Equal(now) || !at.Equal(now) {
		t.Fatalf("empty service: %v, since %v, now %v; want nothing, since = now = %v", first, since, at, now)
	}
	accept := func(i, seq int) peer.ID {
		t.Helper()
		ad, priv := synthAdvert(t, i, "30.1.0.1", []Role{RoleRelay, RoleRendezvous}, nil)
		ad.Seq = uint64(seq)
		env, err := SignAdvert(&ad, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.accept(env, "", nil); err != nil {
			t.Fatal(err)
		}
		return ad.Peer
	}
	t0 := now
	a := accept(0, 1)
	now = t0.Add(20 * time.Minute)
	b := accept(1, 1)
	now = t0.Add(40 * time.Minute)
	accept(0, 2) // a newer advert of a
	_, unknown := testKey(t, "never-seen")
	check := func(label string) {
		t.Helper()
		first, since, at := s.FirstSeen([]peer.ID{a, b, unknown})
		if !first[a].Equal(t0) || !first[b].Equal(t0.Add(20*time.Minute)) {
			t.Errorf("%s: first seen a %v, b %v; want %v and 20 min later", label, first[a], first[b], t0)
		}
		if _, ok := first[unknown]; ok || len(first) != 2 {
			t.Errorf("%s: %d entries, one for a peer never seen: %v", label, len(first), ok)
		}
		if !since.Equal(t0) || !at.Equal(now) {
			t.Errorf("%s: since %v, now %v; want %v, %v", label, since, at, t0, now)
		}
	}
	check("running")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(45 * time.Minute)
	s = open()
	t.Cleanup(func() { s.Close() })
	check("after a restart")
}

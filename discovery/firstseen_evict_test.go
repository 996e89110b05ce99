package discovery

import (
	"testing"
	"time"
)

// TestFirstSeenSinceSurvivesEviction: where the service's picture of the
// network begins (FirstSeen's since, which the HSDir age gate counts its
// bootstrap hour from) does not move when the oldest records are evicted
// to make room for new adverts, here or after a restart. Otherwise a flood
// of fresh adverts that pushes every older record out of MaxKnown moves
// since to the flood's start, and every node of the flood counts as found
// while bootstrapping: old enough for the HSDir ring at once, not after a
// day.
func TestFirstSeenSinceSurvivesEviction(t *testing.T) {
	dir := t.TempDir()
	h, _ := loopbackHost(t, nil)
	now := testEpoch
	open := func() *Service {
		s, err := New(h, nil, Config{CacheDir: dir, MaxKnown: 3, Now: func() time.Time { return now }, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	accept := func(i int) {
		t.Helper()
		ad, priv := synthAdvert(t, i, "30.1.0.1", []Role{RoleRelay, RoleRendezvous}, nil)
		ad.Expiry = now.Add(time.Hour)
		env, err := SignAdvert(&ad, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.accept(env, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	t0 := now
	accept(0) // an honest node, known from the start
	// Two days later a flood of new adverts evicts it.
	now = t0.Add(48 * time.Hour)
	for i := 1; i <= 4; i++ {
		accept(i)
	}
	if _, since, _ := s.FirstSeen(nil); !since.Equal(t0) {
		t.Fatalf("since %v after the oldest records were evicted, want %v (the first record's)", since, t0)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	s = open()
	t.Cleanup(func() { s.Close() })
	if _, since, _ := s.FirstSeen(nil); !since.Equal(t0) {
		t.Fatalf("since %v after a restart, want %v", since, t0)
	}
}

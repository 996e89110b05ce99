package voucher

import (
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const hour = time.Hour

var testT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKeys hands out RSA-2048 keys generated once per test binary: key
// generation is the slow part of every keyset test.
type testKeys struct {
	once sync.Once
	keys []*rsa.PrivateKey
	err  error
}

var fixtureKeys testKeys // test fixture, read-only after once

func keysForTest(t testing.TB, n int) []*rsa.PrivateKey {
	t.Helper()
	fixtureKeys.once.Do(func() {
		for range 6 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				fixtureKeys.err = err
				return
			}
			fixtureKeys.keys = append(fixtureKeys.keys, k)
		}
	})
	if fixtureKeys.err != nil {
		t.Fatal(fixtureKeys.err)
	}
	if n > len(fixtureKeys.keys) {
		t.Fatalf("want %d keys, have %d", n, len(fixtureKeys.keys))
	}
	return fixtureKeys.keys[:n]
}

// testKeyset builds a signing keyset for amounts 1,2,4,8,16 (sharing the
// fixture keys) minting in [t0, t0+1h) and redeeming until t0+2h.
func testKeyset(t testing.TB, t0 time.Time) *SigningKeyset {
	t.Helper()
	amounts := []uint64{1, 2, 4, 8, 16}
	s, err := NewSigningKeyset(amounts, keysForTest(t, len(amounts)), t0, t0.Add(hour), t0.Add(2*hour))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func timeMinutes(m int) time.Duration { return time.Duration(m) * time.Minute }

// testKeysetWindow is testKeyset with another window: same RSA keys,
// different keyset id.
func testKeysetWindow(t testing.TB, t0 time.Time) *SigningKeyset { return testKeyset(t, t0) }

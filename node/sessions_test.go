package node

import (
	"errors"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

func TestSessionRunsIntoGraceThenRefuses(t *testing.T) {
	t.Parallel()
	s := newSessions(nil, 2) // 2 sat/MB: 500,000 bytes per sat
	if s.bytesPerSat != 500_000 {
		t.Fatalf("bytesPerSat = %d", s.bytesPerSat)
	}
	a, b := [cell.CookieLen]byte{1}, [cell.CookieLen]byte{2}
	cells := SessionGraceBytes / cell.Size
	for i := 0; i < cells; i++ {
		if err := s.account(a, cell.Size); err != nil {
			t.Fatalf("cell %d within grace refused: %v", i, err)
		}
	}
	if err := s.account(a, cell.Size); !errors.Is(err, circuit.ErrPayment) {
		t.Fatalf("cell past grace: err = %v, want ErrPayment", err)
	}
	if err := s.account(b, cell.Size); err != nil {
		t.Fatalf("another session is charged separately: %v", err)
	}
	// Credit (what a TOPUP adds) lets the session go on.
	s.credit[a] += 10 * s.bytesPerSat
	if err := s.account(a, cell.Size); err != nil {
		t.Fatalf("after credit: %v", err)
	}
	s.closed(a)
	if _, ok := s.credit[a]; ok {
		t.Fatal("closed session still in the ledger")
	}
}

func TestSatsFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		bytes int64
		price uint64
		want  uint64
	}{
		{0, 1, 1},
		{1, 1, 1},
		{1_000_000, 1, 1},
		{1_000_001, 1, 2},
		{8 << 20, 2, 17},
		{10_000_000, 0, 1},
	} {
		if got := satsFor(tc.bytes, tc.price); got != tc.want {
			t.Errorf("satsFor(%d, %d) = %d, want %d", tc.bytes, tc.price, got, tc.want)
		}
	}
}

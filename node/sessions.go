package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher/mint"
)

// sessions is a paid hop's ledger: one prepaid byte allowance per session
// cookie (PROTOCOL.md §4.3). TOPUP redeems vouchers into the allowance; every
// relayed cell is charged against it. A session may run GraceBytes into debt
// (so circuit setup and the first TOPUP can flow, and top-ups sent while data
// is in flight arrive in time); beyond that the hop destroys the circuit with
// reason payment. The ledger is memory only: a hop that restarts loses its
// circuits, and with them what they had prepaid (a few MB by design).
type sessions struct {
	mint *mint.Mint
	// bytesPerSat is what one sat buys at this hop's price.
	bytesPerSat int64
	grace       int64

	mu sync.Mutex
	// credit is guarded by mu. One entry per live relayed circuit; the
	// circuit engine's MaxCircuits bounds it, and SessionClosed removes it.
	credit map[[cell.CookieLen]byte]int64
}

// SessionGraceBytes is how far a paid session may run before its first
// TOPUP or between top-ups: 2 MiB.
const SessionGraceBytes = 2 << 20

func newSessions(m *mint.Mint, priceSatPerMB uint64) *sessions {
	bps := int64(1 << 62) // price 0: free
	if priceSatPerMB > 0 {
		bps = int64(1_000_000 / priceSatPerMB)
	}
	return &sessions{mint: m, bytesPerSat: bps, grace: SessionGraceBytes, credit: make(map[[cell.CookieLen]byte]int64)}
}

// account is circuit.Config.Account: it must not block.
func (s *sessions) account(cookie [cell.CookieLen]byte, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.credit[cookie] - int64(n)
	s.credit[cookie] = c
	if c < -s.grace {
		return fmt.Errorf("session prepaid allowance exhausted: %w", circuit.ErrPayment)
	}
	return nil
}

// topUp is circuit.Config.TopUp: it redeems the vouchers in payload (the
// spent set is written and synced before this returns) and answers the new
// allowance in bytes, 8 bytes big-endian.
func (s *sessions) topUp(ctx context.Context, cookie [cell.CookieLen]byte, payload []byte) ([]byte, error) {
	sats, err := s.mint.RedeemPayload(ctx, payload)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	c := s.credit[cookie] + int64(sats)*s.bytesPerSat
	s.credit[cookie] = c
	s.mu.Unlock()
	return binary.BigEndian.AppendUint64(nil, uint64(max(c, 0))), nil
}

func (s *sessions) closed(cookie [cell.CookieLen]byte) {
	s.mu.Lock()
	delete(s.credit, cookie)
	s.mu.Unlock()
}

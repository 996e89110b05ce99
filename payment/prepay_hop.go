package payment

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Prepay is circuit.Config.Prepay (PROTOCOL.md §4.1, §4.5): it judges the
// offer a CREATE's handshake carries, before the hop answers.
//
//   - A voucher batch is redeemed through LedgerConfig.Redeem (the mint
//     checks format and keyset of the whole batch, then signatures, then
//     the spent set, which it syncs before returning: VOUCHERS.md §2.5).
//     If it credits anything, the session opens with that credit at the
//     session's starting price (AnswerPaid); its grace applies only from
//     then on, so a session is never in debt before its first payment, and
//     is at most what its sats buy (one small voucher does not open the
//     whole GraceBytes). If
//     it credits nothing, the handshake is refused (AnswerRefused) with an
//     Ack naming the first refusal, and no session opens.
//   - A mint-only request opens a session the engine confines to the mint
//     service (AnswerMintOnly): it is metered at price 0 (the engine caps
//     its cells, circuit.Limits.MintOnlyMaxCells).
//
// Either way the answer carries an Ack as TOPUP_ACK does (§5.3). A session
// opened here is removed by Closed (the engine calls SessionClosed for
// every session this accepted, even for a circuit that never opens).
func (l *Ledger) Prepay(ctx context.Context, cookie [cell.CookieLen]byte, from peer.ID, offer cell.Offer) (cell.AnswerStatus, []byte) {
	now := l.now()
	switch offer.Kind {
	case cell.OfferMintOnly:
		l.mu.Lock()
		defer l.mu.Unlock()
		s := &session{opened: now, seen: now, role: cell.ServiceMint.String(), mintOnly: true}
		l.sessions[cookie] = s
		return cell.AnswerMintOnly, s.ackLocked(0, ReasonNone)
	case cell.OfferVouchers:
	default:
		return cell.AnswerRefused, encodeAck(Ack{Reason: ReasonMalformed})
	}
	sats, err := l.redeem(ctx, offer.Batch)
	reason := reasonFor(err)
	if sats == 0 {
		if reason == ReasonNone {
			reason = ReasonOther
		}
		l.log.Debug("handshake payment refused", "peer", from, "reason", reason, "err", err)
		return cell.AnswerRefused, encodeAck(Ack{Reason: reason})
	}
	if err != nil {
		l.log.Debug("handshake payment partly refused; crediting the good vouchers", "sats", sats, "reason", reason, "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &session{opened: now, seen: now, price: l.startPrice, prepaid: true}
	s.allowance = CreditBytes(sats, s.price)
	s.sats = sats
	s.topUps = 1
	l.sessions[cookie] = s
	return cell.AnswerPaid, s.ackLocked(sats, reason)
}

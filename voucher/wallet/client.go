package wallet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// errTransport marks failures to reach the node or garbled answers, as
// opposed to refusals the node stated.
var errTransport = errors.New("wallet: mint stream failed")

// errRefused marks a refusal the node stated with an error code.
var errRefused = errors.New("wallet: node refused")

// roundTrip sends one request on a fresh mint stream (Config.Dial, or a
// direct /co-infuse/mint/1 stream on Host) and reads one response
// (VOUCHERS.md §3.1). A refusal comes back as an error wrapping the code's
// sentinel.
func (w *Wallet) roundTrip(ctx context.Context, node peer.ID, req []byte, want voucher.MsgType) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.StreamTimeout)
	defer cancel()
	s, err := w.dial(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("%w: open: %v", errTransport, err)
	}
	if d, ok := s.(interface{ SetDeadline(time.Time) error }); ok {
		deadline, _ := ctx.Deadline()
		_ = d.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { abort(s) })
	defer stop()
	if err := voucher.WriteMessage(s, req); err != nil {
		abort(s)
		return nil, fmt.Errorf("%w: write: %v", errTransport, err)
	}
	resp, err := voucher.ReadMessage(s)
	if err != nil {
		abort(s)
		return nil, fmt.Errorf("%w: read: %v", errTransport, err)
	}
	s.Close()
	switch voucher.MsgType(resp[0]) {
	case want:
		return resp, nil
	case voucher.MsgError:
		e, err := voucher.ParseErrorResponse(resp)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errTransport, err)
		}
		return nil, fmt.Errorf("%w: %w", errRefused, e.Code.Err())
	}
	return nil, fmt.Errorf("%w: %w: unexpected message type %d", errTransport, voucher.ErrMalformed, resp[0])
}

func (w *Wallet) requestQuote(ctx context.Context, node peer.ID, sats uint64) (voucher.Quote, error) {
	req := voucher.QuoteRequest{Amount: sats}
	b, err := req.MarshalBinary()
	if err != nil {
		return voucher.Quote{}, err
	}
	resp, err := w.roundTrip(ctx, node, b, voucher.MsgQuote)
	if err != nil {
		return voucher.Quote{}, fmt.Errorf("quote: %w", err)
	}
	q, err := voucher.ParseQuote(resp)
	if err != nil {
		return voucher.Quote{}, fmt.Errorf("quote: %w: %w", errTransport, err)
	}
	return q, nil
}

// requestMint sends the mint request, retrying while the node reports the
// invoice unsettled, for up to SettleWait.
func (w *Wallet) requestMint(ctx context.Context, node peer.ID, req *voucher.MintRequest, waitSettle bool) (voucher.MintResponse, error) {
	b, err := req.MarshalBinary()
	if err != nil {
		return voucher.MintResponse{}, err
	}
	give := time.Now().Add(w.cfg.SettleWait)
	wait := 100 * time.Millisecond
	for {
		resp, err := w.roundTrip(ctx, node, b, voucher.MsgMintResponse)
		if err == nil {
			r, err := voucher.ParseMintResponse(resp)
			if err != nil {
				return voucher.MintResponse{}, fmt.Errorf("mint: %w: %w", errTransport, err)
			}
			if len(r.Sigs) != len(req.Blinded) {
				return voucher.MintResponse{}, fmt.Errorf("mint: %w: %d signatures for %d messages", errTransport, len(r.Sigs), len(req.Blinded))
			}
			return r, nil
		}
		if !waitSettle || !errors.Is(err, voucher.ErrNotPaid) || time.Now().Add(wait).After(give) {
			return voucher.MintResponse{}, fmt.Errorf("mint: %w", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return voucher.MintResponse{}, fmt.Errorf("mint: %w", ctx.Err())
		case <-w.quit:
			t.Stop()
			return voucher.MintResponse{}, ErrClosed
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// dial opens one mint stream to node: Config.Dial, or a direct stream.
func (w *Wallet) dial(ctx context.Context, node peer.ID) (io.ReadWriteCloser, error) {
	if w.cfg.Dial != nil {
		return w.cfg.Dial(ctx, node)
	}
	if w.cfg.Host == nil {
		return nil, errors.New("no Dial and no Host")
	}
	return w.cfg.Host.NewStream(ctx, node, protocol.ID(voucher.ProtocolID))
}

// abort ends a stream that failed: Reset if it has one (a libp2p stream),
// else Close.
func abort(s io.Closer) {
	if r, ok := s.(interface{ Reset() error }); ok {
		r.Reset()
		return
	}
	s.Close()
}

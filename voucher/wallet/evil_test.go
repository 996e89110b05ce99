package wallet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// evilProxy is a node that relays the mint protocol to a real mint and
// rewrites its answers with tamper.
func evilProxy(t *testing.T, e *env, tamper func(resp []byte) []byte) host.Host {
	t.Helper()
	h := newHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: e.node, Addrs: e.mintHost.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := e.clientHost.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	h.SetStreamHandler(protocol.ID(voucher.ProtocolID), func(s network.Stream) {
		defer s.Close()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := voucher.ReadMessage(s)
		if err != nil {
			s.Reset()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		up, err := h.NewStream(ctx, e.node, protocol.ID(voucher.ProtocolID))
		if err != nil {
			s.Reset()
			return
		}
		defer up.Close()
		if voucher.WriteMessage(up, req) != nil {
			s.Reset()
			return
		}
		resp, err := voucher.ReadMessage(up)
		if err != nil {
			s.Reset()
			return
		}
		voucher.WriteMessage(s, tamper(resp))
	})
	return h
}

// TestMaliciousNode: a node that answers a paid quote with bad blind
// signatures or the wrong number of them gets no vouchers stored (nothing
// that would fail at redemption), goes into backoff, and the purchase stays
// paid so a later honest answer can still complete it.
func TestMaliciousNode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func([]byte) []byte
		want   error
	}{
		{"bad signature", func(b []byte) []byte {
			if voucher.MsgType(b[0]) == voucher.MsgMintResponse {
				b[len(b)-1] ^= 1
			}
			return b
		}, voucher.ErrBadSignature},
		{"signatures missing", func(b []byte) []byte {
			if voucher.MsgType(b[0]) == voucher.MsgMintResponse {
				r, _ := voucher.ParseMintResponse(b)
				r.Sigs = r.Sigs[:1]
				b, _ = r.MarshalBinary()
			}
			return b
		}, errTransport},
		{"garbage", func(b []byte) []byte {
			if voucher.MsgType(b[0]) == voucher.MsgMintResponse {
				return []byte{byte(voucher.MsgMintResponse), 0}
			}
			return b
		}, voucher.ErrMalformed},
		{"quote for more", func(b []byte) []byte {
			if voucher.MsgType(b[0]) == voucher.MsgQuote {
				q, _ := voucher.ParseQuote(b)
				q.Amount++
				b, _ = q.MarshalBinary()
			}
			return b
		}, ErrQuoteMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			evil := evilProxy(t, e, tc.tamper)
			w := e.wallet(t)
			_, err := w.Buy(ctxT(t), evil.ID(), 3)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Buy: %v, want %v", err, tc.want)
			}
			bals, _ := w.Balances()
			if b := bals[evil.ID()]; b.Available != 0 {
				t.Fatalf("vouchers stored from a malicious node: %+v", b)
			}
			if _, err := w.Buy(ctxT(t), evil.ID(), 3); !errors.Is(err, ErrBackoff) {
				t.Fatalf("second Buy: %v, want ErrBackoff", err)
			}
			if errors.Is(tc.want, ErrQuoteMismatch) {
				if _, calls := e.ln.Payments(); calls != 0 {
					t.Fatal("paid a mismatching quote")
				}
				return
			}
			// Paid once, purchase kept as paid for a later honest answer.
			ps, _ := w.RecentPurchases(-1)
			if paid, _ := e.ln.Payments(); paid != 1 || len(ps) != 1 || ps[0].State != PurchasePaid {
				t.Fatalf("payments %d, purchases %+v", paid, ps)
			}
		})
	}
}

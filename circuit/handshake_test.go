package circuit

import (
	"bytes"
	"errors"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/flynn/noise"
)

func TestHandshake(t *testing.T) {
	t.Parallel()
	key, err := GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateOnionKey()
	cookie := [cell.CookieLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name    string
		pub     [32]byte
		mangle  func(m []byte) []byte
		wantErr bool
	}{
		{"ok", key.Public(), nil, false},
		{"wrong onion key", other.Public(), nil, true},
		{"truncated", key.Public(), func(m []byte) []byte { return m[:len(m)-1] }, true},
		{"flipped", key.Public(), func(m []byte) []byte { m[40] ^= 1; return m }, true},
		{"empty", key.Public(), func([]byte) []byte { return nil }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hs, msg1, err := startHandshake(tc.pub, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.mangle != nil {
				msg1 = tc.mangle(msg1)
			}
			hk, msg2, err := acceptHandshake(key, msg1, cookie)
			if tc.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("accept = %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ck, _, err := hs.finish(msg2)
			if err != nil {
				t.Fatal(err)
			}
			if ck.cookie != cookie || ck.fwd != hk.fwd || ck.bwd != hk.bwd {
				t.Fatal("client and hop disagree on keys or cookie")
			}
			if ck.fwd == ck.bwd {
				t.Fatal("forward and backward keys are equal")
			}
		})
	}
}

func TestHandshakeBadReply(t *testing.T) {
	t.Parallel()
	key, _ := GenerateOnionKey()
	hs, msg1, _ := startHandshake(key.Public(), nil)
	_, msg2, err := acceptHandshake(key, msg1, [cell.CookieLen]byte{})
	if err != nil {
		t.Fatal(err)
	}
	msg2[len(msg2)-1] ^= 1
	if _, _, err := hs.finish(msg2); !errors.Is(err, ErrProtocol) {
		t.Fatalf("finish = %v, want ErrProtocol", err)
	}
}

func TestOnionKey(t *testing.T) {
	t.Parallel()
	k, err := GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseOnionKey(k.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if k2.Public() != k.Public() || !bytes.Equal(k2.Bytes(), k.Bytes()) {
		t.Fatal("parsed key differs")
	}
	b := k.Bytes()
	b[0] ^= 1
	if bytes.Equal(k.Bytes(), b) {
		t.Fatal("Bytes returned internal storage")
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		if _, err := ParseOnionKey(bad); err == nil {
			t.Fatalf("ParseOnionKey(%d bytes) succeeded", len(bad))
		}
	}
}

func TestReasonMapping(t *testing.T) {
	t.Parallel()
	for _, s := range []error{ErrExitPolicy, ErrResolveFailed, ErrConnRefused, ErrUnreachable, ErrTimeout, ErrServiceNotOffered, ErrPayment, ErrResourceLimit, ErrProtocol} {
		r := EndReasonFor(wrapf(s))
		if got := ErrorForEnd(r); got != s {
			t.Errorf("%v → END %v → %v", s, r, got)
		}
	}
	if EndReasonFor(nil) != cell.EndDone || ErrorForEnd(cell.EndDone) != nil {
		t.Error("nil ⇄ EndDone")
	}
	if ErrorForEnd(cell.EndReason(200)) != ErrProtocol {
		t.Error("unknown END reason is not a protocol error")
	}
	for _, s := range []error{ErrProtocol, ErrResourceLimit, ErrPayment, ErrTimeout, ErrUnreachable} {
		r := DestroyReasonFor(wrapf(s))
		if got := ErrorForDestroy(r); got != s {
			t.Errorf("%v → DESTROY %v → %v", s, r, got)
		}
		ce := &CloseError{Reason: r}
		if !errors.Is(ce, ErrClosed) || !errors.Is(ce, s) {
			t.Errorf("CloseError{%v} does not match ErrClosed and %v", r, s)
		}
	}
	if DestroyReasonFor(errors.New("x")) != cell.ReasonInternal {
		t.Error("unknown error is not internal")
	}
}

func wrapf(err error) error { return errors.Join(errors.New("context"), err) }

// Handshake state this package can reach is zeroed once the keys are
// derived (PROTOCOL.md §4.2), on success and when the hop never answers.
func TestHandshakeStateWiped(t *testing.T) {
	t.Parallel()
	key, err := GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	zero := func(b []byte) bool { return len(b) > 0 && bytes.Count(b, []byte{0}) == len(b) }
	for _, tc := range []struct {
		name   string
		answer bool
	}{
		{"finished", true},
		{"abandoned", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch, msg1, err := startHandshake(key.Public(), nil)
			if err != nil {
				t.Fatal(err)
			}
			hs := ch.hs
			eph, hash := hs.LocalEphemeral().Private, hs.ChannelBinding()
			if zero(eph) || zero(hash) {
				t.Fatal("fresh handshake state is already zero")
			}
			if tc.answer {
				_, msg2, err := acceptHandshake(key, msg1, [cell.CookieLen]byte{1})
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := ch.finish(msg2); err != nil {
					t.Fatal(err)
				}
				if _, _, err := ch.finish(msg2); !errors.Is(err, ErrProtocol) {
					t.Fatalf("second finish = %v, want ErrProtocol", err)
				}
			} else {
				ch.wipe()
			}
			if !zero(eph) || !zero(hs.ChannelBinding()) {
				t.Fatalf("ephemeral key %x, handshake hash %x: want zero", eph, hs.ChannelBinding())
			}
		})
	}
	t.Run("cipher states", func(t *testing.T) {
		t.Parallel()
		cs := noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)
		hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: cs, Pattern: noise.HandshakeNN, Initiator: true})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noise.NewHandshakeState(noise.Config{CipherSuite: cs, Pattern: noise.HandshakeNN})
		if err != nil {
			t.Fatal(err)
		}
		m1, _, _, _ := hs.WriteMessage(nil, nil)
		if _, _, _, err := resp.ReadMessage(nil, m1); err != nil {
			t.Fatal(err)
		}
		m2, _, _, _ := resp.WriteMessage(nil, nil)
		_, cs1, cs2, err := hs.ReadMessage(nil, m2)
		if err != nil || cs1 == nil {
			t.Fatal(err)
		}
		k1, k2 := cs1.UnsafeKey(), cs2.UnsafeKey()
		wipeHandshake(hs, cs1, cs2)
		if cs1.UnsafeKey() == k1 || cs2.UnsafeKey() == k2 {
			t.Fatal("cipher state keys survived the wipe")
		}
	})
}

// The offer travels in message 1 to the onion key's holder only, and the
// answer back in message 2 (PROTOCOL.md §4.1).
func TestHandshakeCarriesOfferAndAnswer(t *testing.T) {
	t.Parallel()
	key, _ := GenerateOnionKey()
	other, _ := GenerateOnionKey()
	off, err := (&cell.Offer{Kind: cell.OfferVouchers, Batch: []byte("batch")}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, msg1, err := startHandshake(key.Public(), off)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(msg1, []byte("batch")) {
		t.Fatal("offer in the clear in message 1")
	}
	if _, _, err := readHandshake(other, msg1); !errors.Is(err, ErrProtocol) {
		t.Fatalf("another onion key read the offer: %v", err)
	}
	sh, payload, err := readHandshake(key, msg1)
	if err != nil || !bytes.Equal(payload, off) {
		t.Fatalf("hop read %x, %v; want %x", payload, err, off)
	}
	ans := cell.Answer{Cookie: [cell.CookieLen]byte{7}, Paid: true, Status: cell.AnswerRefused, Ack: []byte{1, 6}}
	hk, msg2, err := sh.answer(ans)
	if err != nil {
		t.Fatal(err)
	}
	ck, got, err := ch.finish(msg2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cookie != ans.Cookie || !got.Paid || got.Status != ans.Status || !bytes.Equal(got.Ack, ans.Ack) || ck.fwd != hk.fwd {
		t.Fatalf("client read answer %+v, want %+v", got, ans)
	}
}

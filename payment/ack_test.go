package payment

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher"
)

// ackVectors is testdata/topup_ack.json; see the comment in that file.
type ackVectors struct {
	Valid []struct {
		Name        string `json:"name"`
		Hex         string `json:"hex"`
		Reason      uint8  `json:"reason"`
		CreditedSat string `json:"credited_sat"`
		Allowance   string `json:"allowance"`
		Charged     string `json:"charged"`
	} `json:"valid"`
	Invalid []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
	} `json:"invalid"`
}

func loadAckVectors(tb testing.TB) ackVectors {
	tb.Helper()
	raw, err := os.ReadFile("testdata/topup_ack.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v ackVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatal(err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 {
		tb.Fatal("no vectors")
	}
	return v
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAckVectors(t *testing.T) {
	t.Parallel()
	vs := loadAckVectors(t)
	for _, v := range vs.Valid {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			in := mustHex(t, v.Hex)
			var a Ack
			if err := a.UnmarshalBinary(in); err != nil {
				t.Fatal(err)
			}
			c, err1 := strconv.ParseUint(v.CreditedSat, 10, 64)
			al, err2 := strconv.ParseInt(v.Allowance, 10, 64)
			ch, err3 := strconv.ParseUint(v.Charged, 10, 64)
			if err := errors.Join(err1, err2, err3); err != nil {
				t.Fatal(err)
			}
			if want := (Ack{Reason: AckReason(v.Reason), CreditedSat: c, Allowance: al, Charged: ch}); a != want {
				t.Fatalf("decoded %+v, want %+v", a, want)
			}
			out, err := a.AppendBinary([]byte("prefix"))
			if err != nil || !bytes.Equal(out, append([]byte("prefix"), in...)) {
				t.Fatalf("re-encoded %x, %v; want prefix + %x", out, err, in)
			}
		})
	}
	for _, v := range vs.Invalid {
		t.Run("invalid/"+v.Name, func(t *testing.T) {
			t.Parallel()
			a := Ack{Reason: ReasonSpent, CreditedSat: 7}
			if err := a.UnmarshalBinary(mustHex(t, v.Hex)); !errors.Is(err, ErrMalformedAck) {
				t.Fatalf("err = %v, want ErrMalformedAck", err)
			}
			if a != (Ack{Reason: ReasonSpent, CreditedSat: 7}) {
				t.Fatalf("a failed parse changed the Ack: %+v", a)
			}
		})
	}
}

// An Ack the parser would refuse is not encoded either.
func TestAckAppendRefuses(t *testing.T) {
	t.Parallel()
	for _, a := range []Ack{
		{Reason: maxAckReason + 1, CreditedSat: 1},
		{},
		{CreditedSat: 1, Allowance: MaxAllowanceBytes + 1},
		{CreditedSat: 1, Charged: 1 << 63},
	} {
		if b, err := a.AppendBinary(nil); !errors.Is(err, ErrMalformedAck) || len(b) != 0 {
			t.Errorf("%+v: %x, %v", a, b, err)
		}
	}
}

func FuzzAck(f *testing.F) {
	vs := loadAckVectors(f)
	for _, v := range vs.Valid {
		f.Add(mustHex(f, v.Hex))
	}
	for _, v := range vs.Invalid {
		f.Add(mustHex(f, v.Hex))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		var a Ack
		err := a.UnmarshalBinary(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("parser modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedAck) {
				t.Fatalf("error %v does not wrap ErrMalformedAck", err)
			}
			return
		}
		out, err := a.AppendBinary(nil)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("re-encoding %x, %v; want %x", out, err, in)
		}
		var b Ack
		if err := b.UnmarshalBinary(out); err != nil || a != b {
			t.Fatalf("decoded differently the second time: %+v, %v; want %+v", b, err, a)
		}
	})
}

func TestReasonFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want AckReason
	}{
		{nil, ReasonNone},
		{fmt.Errorf("redeem: %w", voucher.ErrMalformed), ReasonMalformed},
		{fmt.Errorf("redeem: %w", voucher.ErrUnknownKeyset), ReasonUnknownKeyset},
		{fmt.Errorf("redeem: %w", voucher.ErrExpired), ReasonExpired},
		{fmt.Errorf("redeem: %w", voucher.ErrNotYetValid), ReasonNotYetValid},
		{fmt.Errorf("redeem: %w", voucher.ErrBadSignature), ReasonForged},
		{fmt.Errorf("redeem: %w", voucher.ErrDenomination), ReasonForged},
		{fmt.Errorf("redeem: %w", voucher.ErrSpent), ReasonSpent},
		{fmt.Errorf("redeem: %w", voucher.ErrClosed), ReasonUnavailable},
		{fmt.Errorf("redeem: %w", voucher.ErrUnavailable), ReasonUnavailable},
		{fmt.Errorf("redeem: %w", context.DeadlineExceeded), ReasonUnavailable},
		{ErrUnknownSession, ReasonUnknownSession},
		{errors.New("this node sells no vouchers"), ReasonOther},
	} {
		if got := reasonFor(tc.err); got != tc.want {
			t.Errorf("reasonFor(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for r := ReasonNone; r <= maxAckReason+1; r++ {
		if r.String() == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// The ledger's answers: a mixed batch credits its good vouchers and names
// the first refusal; a refused batch still says why, with the session's
// allowance and charges; an unknown session says so.
func TestLedgerAcks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		open      bool
		sats      uint64
		redeemErr error
		wantErr   error
		want      Ack
	}{
		{"all good", true, 4, nil, nil,
			Ack{Reason: ReasonNone, CreditedSat: 4, Allowance: 2_000_000 - 3*cell.Size, Charged: 3 * cell.Size}},
		{"mixed batch: good ones credited, first refusal named", true, 4, fmt.Errorf("redeem: %w", voucher.ErrSpent), nil,
			Ack{Reason: ReasonSpent, CreditedSat: 4, Allowance: 2_000_000 - 3*cell.Size, Charged: 3 * cell.Size}},
		{"mixed batch with forgeries", true, 1, fmt.Errorf("redeem: %w", voucher.ErrBadSignature), nil,
			Ack{Reason: ReasonForged, CreditedSat: 1, Allowance: 500_000 - 3*cell.Size, Charged: 3 * cell.Size}},
		{"all expired", true, 0, fmt.Errorf("redeem: %w", voucher.ErrExpired), ErrNothingCredited,
			Ack{Reason: ReasonExpired, Allowance: -3 * cell.Size, Charged: 3 * cell.Size}},
		{"mint down", true, 0, fmt.Errorf("redeem: %w", voucher.ErrClosed), ErrNothingCredited,
			Ack{Reason: ReasonUnavailable, Allowance: -3 * cell.Size, Charged: 3 * cell.Size}},
		{"worth nothing", true, 0, nil, ErrNothingCredited,
			Ack{Reason: ReasonOther, Allowance: -3 * cell.Size, Charged: 3 * cell.Size}},
		{"unknown session", false, 4, nil, ErrUnknownSession, Ack{Reason: ReasonUnknownSession}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &redeemer{sats: tc.sats, err: tc.redeemErr}
			l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 2})
			if tc.open {
				for range 3 {
					if err := l.Account(ck(1), cell.Size); err != nil {
						t.Fatal(err)
					}
				}
			}
			out, err := l.TopUp(context.Background(), ck(1), []byte("batch"))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := ackOf(t, out); got != tc.want {
				t.Fatalf("ack %+v, want %+v", got, tc.want)
			}
		})
	}
}

package exit

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// mustTarget parses a target the test knows is valid. The grammar itself is
// tested with its golden cases in circuit/cell (testdata/targets.json).
func mustTarget(tb testing.TB, s string) cell.Target {
	tb.Helper()
	t, err := cell.ParseTarget(s)
	if err != nil {
		tb.Fatalf("target %q: %v", s, err)
	}
	return t
}

// TestDialRefusedBeforeLookup: targets the exit never serves are refused
// before any lookup or dial, with ErrBadTarget and the circuit sentinel
// that picks the END reason, and without naming the target.
func TestDialRefusedBeforeLookup(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		target cell.Target
		want   error
	}{
		{"zero", cell.Target{}, circuit.ErrProtocol},
		{"onion", mustTarget(t, "secretsecret.onion:80"), circuit.ErrResolveFailed},
		{"onion subdomain any case", mustTarget(t, "www.SECRETSECRET.Onion:443"), circuit.ErrResolveFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			res := func(context.Context, string) ([]netip.Addr, error) {
				t.Error("resolver called")
				return nil, errors.New("test: no lookups")
			}
			d := mustDialer(t, loopbackPolicy(t), WithResolver(res), WithDialFunc(rec.dial))
			c, err := d.Dial(t.Context(), tc.target)
			if c != nil {
				_ = c.Close()
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadTarget) {
				t.Fatalf("Dial = %v, want %v and ErrBadTarget", err, tc.want)
			}
			if strings.Contains(strings.ToLower(err.Error()), "secret") {
				t.Fatalf("error %q names the target", err)
			}
			if calls := rec.got(); len(calls) != 0 {
				t.Fatalf("dialed %v", calls)
			}
		})
	}
}

// TestDialLiteralSkipsResolver: an IP-literal target is checked and dialed
// as it is, IPv6 included, without a lookup.
func TestDialLiteralSkipsResolver(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"127.0.0.1:9", "[::1]:9"} {
		rec := &recorder{}
		res := func(context.Context, string) ([]netip.Addr, error) {
			t.Errorf("%s: resolver called", s)
			return nil, errors.New("test: no lookups")
		}
		d := mustDialer(t, loopbackPolicy(t), WithResolver(res), WithDialFunc(rec.dial))
		c, _ := d.Dial(t.Context(), mustTarget(t, s))
		if c != nil {
			_ = c.Close()
		}
		if calls := rec.got(); len(calls) != 1 || calls[0] != s {
			t.Fatalf("dialed %v, want [%s]", calls, s)
		}
	}
}

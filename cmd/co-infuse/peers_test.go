package main

import (
	"strings"
	"testing"

	"github.com/co-infuse/co-infuse/discovery"
)

// TestFormatStake: the STAKE column of `peers` shows the verified stake, a
// refusal's reason, an unchecked proof or "unstaked".
func TestFormatStake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   discovery.StakeStatus
		want string
	}{
		{discovery.StakeStatus{}, "unstaked"},
		{discovery.StakeStatus{Proof: true}, "unchecked"},
		{discovery.StakeStatus{Proof: true, Refused: "signed by another lightning node than the advert names"}, "refused: signed by another"},
		{discovery.StakeStatus{Proof: true, Node: "02" + strings.Repeat("ab", 32), CapacitySat: 4_000_000, EffectiveSat: 2_000_000, Channels: 2},
			"2000000 sat effective (4000000 sat in 2 channels, node 02ababababab…)"},
		{discovery.StakeStatus{Proof: true, Node: "02" + strings.Repeat("ab", 32), CapacitySat: 20_000, EffectiveSat: 222, Channels: 1},
			"222 sat effective, below the 1000000 sat minimum: counts as unstaked"},
		{discovery.StakeStatus{Node: "02ab"}, "node 02ab…"},
	}
	for _, tc := range tests {
		if got := formatStake(tc.in); !strings.Contains(got, tc.want) {
			t.Errorf("formatStake(%+v) = %q, want %q in it", tc.in, got, tc.want)
		}
	}
}

// TestFormatShare: the SHARE column gives the guard, middle and exit
// shares in percent, in that order.
func TestFormatShare(t *testing.T) {
	t.Parallel()
	if got, want := formatShare(discovery.PositionShare{Guard: 1, Middle: 0.0049, Exit: 0}), "100.00/0.49/0.00"; got != want {
		t.Errorf("formatShare = %q, want %q", got, want)
	}
}

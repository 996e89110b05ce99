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
		{discovery.StakeStatus{Proof: true, Node: "02" + strings.Repeat("ab", 32), CapacitySat: 1_000_000, EffectiveSat: 500_000, Channels: 2},
			"500000 sat effective (1000000 sat in 2 channels, node 02ababababab…)"},
		{discovery.StakeStatus{Node: "02ab"}, "node 02ab…"},
	}
	for _, tc := range tests {
		if got := formatStake(tc.in); !strings.Contains(got, tc.want) {
			t.Errorf("formatStake(%+v) = %q, want %q in it", tc.in, got, tc.want)
		}
	}
}

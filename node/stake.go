package node

import (
	"context"
	"errors"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/lightning"
)

// stakeFuncs hands discovery the stake rule's LND calls (DISCOVERY.md §7):
// relays sign their stake proof, everyone verifies others' proofs against
// their own LND's graph. Without LND (payments off) all three stay nil and
// every node weighs as unstaked.
func (n *Node) stakeFuncs(cfg *discovery.Config) {
	if n.pay == nil || n.pay.lnd == nil {
		return
	}
	lnd := n.pay.lnd
	if n.relays() {
		cfg.SignStake = lnd.SignMessage
	}
	cfg.VerifyStake = func(ctx context.Context, msg []byte, sig string) (string, error) {
		node, err := lnd.VerifyMessage(ctx, msg, sig)
		if errors.Is(err, lightning.ErrStakeUnverified) {
			return "", nil
		}
		return node, err
	}
	cfg.NodeChannels = func(ctx context.Context, node string) ([]discovery.StakeChannel, uint32, error) {
		chans, best, err := lnd.NodeChannels(ctx, node)
		if errors.Is(err, lightning.ErrNodeNotInGraph) {
			return nil, best, nil
		}
		if err != nil {
			return nil, 0, err
		}
		out := make([]discovery.StakeChannel, len(chans))
		for i, c := range chans {
			out[i] = discovery.StakeChannel{CapacitySat: c.CapacitySat, FundingHeight: c.FundingHeight}
		}
		return out, best, nil
	}
}

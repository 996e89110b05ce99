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
	if !n.cfg.Payments.Enabled {
		return
	}
	// While a client waits for LND (paywait.go) the client has no LND
	// yet: the checks answer "LND cannot answer now", which discovery
	// retries later, keeping its cached verdicts.
	lndNow := func() (*lightning.Client, error) {
		if p := n.pay(); p != nil && p.lnd != nil {
			return p.lnd, nil
		}
		return nil, n.payWait.notReady()
	}
	if n.relays() && n.cfg.Discovery.stakeProof() {
		cfg.SignStake = n.pay().lnd.SignMessage // relays never wait: set by Start
	}
	cfg.VerifyStake = func(ctx context.Context, msg []byte, sig string) (string, error) {
		lnd, err := lndNow()
		if err != nil {
			return "", err
		}
		node, err := lnd.VerifyMessage(ctx, msg, sig)
		if errors.Is(err, lightning.ErrStakeUnverified) {
			return "", nil
		}
		return node, err
	}
	cfg.NodeChannels = func(ctx context.Context, node string) ([]discovery.StakeChannel, uint32, error) {
		lnd, err := lndNow()
		if err != nil {
			return nil, 0, err
		}
		chans, best, err := lnd.NodeChannels(ctx, node)
		if errors.Is(err, lightning.ErrNodeNotInGraph) {
			return nil, best, nil
		}
		if err != nil {
			return nil, 0, err
		}
		out := make([]discovery.StakeChannel, len(chans))
		for i, c := range chans {
			out[i] = discovery.StakeChannel{CapacitySat: c.CapacitySat, FundingHeight: c.FundingHeight, Peer: c.Peer}
		}
		return out, best, nil
	}
}

// stakeProof is discovery.stake_proof, true when unset.
func (c DiscoveryConfig) stakeProof() bool { return c.StakeProof == nil || *c.StakeProof }

package lightning

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/lightningnetwork/lnd/lnrpc"
)

// This file holds what discovery's stake rule needs from LND (DISCOVERY.md
// §7): a relay signs its libp2p identity with its Lightning node key, and a
// client checks that signature and reads the signer's public channels from
// its own view of the graph. discovery takes these as funcs; it never sees
// lnrpc.

// SignMessage signs msg with the node's identity key (lnd SignMessage, the
// "Lightning Signed Message" prefix lnd adds itself) and returns lnd's
// zbase32 signature. Needs message:write.
func (c *Client) SignMessage(ctx context.Context, msg []byte) (string, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	resp, err := c.ln.SignMessage(ctx, &lnrpc.SignMessageRequest{Msg: msg})
	if err != nil {
		return "", classify(rpcSignMessage, c.cfg, err)
	}
	return resp.Signature, nil
}

// VerifyMessage recovers the node key that signed msg with sig (a zbase32
// signature from SignMessage) and returns it as 66 lowercase hex digits. It
// fails with ErrStakeUnverified when the signature does not recover a key or
// the signer is not in this node's channel graph (lnd reports such a
// signature as not valid). Needs message:read.
func (c *Client) VerifyMessage(ctx context.Context, msg []byte, sig string) (string, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	resp, err := c.ln.VerifyMessage(ctx, &lnrpc.VerifyMessageRequest{Msg: msg, Signature: sig})
	if err != nil {
		return "", classify(rpcVerifyMessage, c.cfg, err)
	}
	if !resp.Valid || resp.Pubkey == "" {
		return "", fmt.Errorf("lnd VerifyMessage: %w", ErrStakeUnverified)
	}
	return resp.Pubkey, nil
}

// GraphChannel is one public channel of a node as this LND's graph has it.
type GraphChannel struct {
	// CapacitySat is the channel's capacity in satoshis.
	CapacitySat int64
	// FundingHeight is the block height of the funding transaction, from
	// the short channel id (its top 24 bits).
	FundingHeight uint32
	// Peer is the channel's other end, a node key as 66 hex digits.
	Peer string
}

// NodeChannels returns the public channels of the node pubkeyHex in this
// LND's channel graph, and LND's best block height (for channel ages). A
// node not in the graph gives ErrNodeNotInGraph. Needs info:read.
func (c *Client) NodeChannels(ctx context.Context, pubkeyHex string) ([]GraphChannel, uint32, error) {
	if b, err := hex.DecodeString(pubkeyHex); err != nil || len(b) != 33 {
		return nil, 0, fmt.Errorf("node channels: key %q is not 33 hex bytes", pubkeyHex)
	}
	info, err := c.GetInfo(ctx)
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	resp, err := c.ln.GetNodeInfo(ctx, &lnrpc.NodeInfoRequest{PubKey: pubkeyHex, IncludeChannels: true})
	if err != nil {
		return nil, info.BlockHeight, classify(rpcGetNodeInfo, c.cfg, err)
	}
	out := make([]GraphChannel, 0, len(resp.Channels))
	for _, ch := range resp.Channels {
		other := ch.Node1Pub
		if other == pubkeyHex {
			other = ch.Node2Pub
		}
		out = append(out, GraphChannel{CapacitySat: ch.Capacity, FundingHeight: uint32(ch.ChannelId >> 40), Peer: other})
	}
	return out, info.BlockHeight, nil
}

package lightning

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/lightningnetwork/lnd/lnrpc"
)

// This file holds operator calls: funding a wallet, connecting peers and
// opening channels. co-infuse itself only reads balances; the regtest harness
// uses the rest to build a network.

// Channel is one of the node's open channels.
type Channel struct {
	// RemotePubkey is the peer's node key, hex.
	RemotePubkey string
	// ChannelPoint is "funding_txid:output_index".
	ChannelPoint string
	// Active reports whether the channel can carry payments now.
	Active bool
	// CapacitySat, LocalSat and RemoteSat are in satoshis.
	CapacitySat, LocalSat, RemoteSat int64
}

// Balance sums the node's channel balances, in satoshis.
type Balance struct {
	LocalSat  int64 // spendable by us, summed over open channels
	RemoteSat int64 // receivable by us
}

// NewAddress returns a fresh native segwit (P2WKH) address from LND's
// wallet. Needs address:write.
func (c *Client) NewAddress(ctx context.Context) (string, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	resp, err := c.ln.NewAddress(ctx, &lnrpc.NewAddressRequest{Type: lnrpc.AddressType_WITNESS_PUBKEY_HASH})
	if err != nil {
		return "", classify(rpcNewAddress, c.cfg, err)
	}
	return resp.Address, nil
}

// WalletBalance returns LND's confirmed on-chain balance in satoshis. Needs
// onchain:read.
func (c *Client) WalletBalance(ctx context.Context) (int64, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := c.ln.WalletBalance(ctx, &lnrpc.WalletBalanceRequest{})
	if err != nil {
		return 0, classify(rpcWalletBalance, c.cfg, err)
	}
	return resp.ConfirmedBalance, nil
}

// ConnectPeer connects to the node pubkeyHex at host:port. Being connected
// already is not an error. Needs peers:write.
func (c *Client) ConnectPeer(ctx context.Context, pubkeyHex, hostPort string) error {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = c.ln.ConnectPeer(ctx, &lnrpc.ConnectPeerRequest{
		Addr: &lnrpc.LightningAddress{Pubkey: pubkeyHex, Host: hostPort},
	})
	if err != nil && strings.Contains(err.Error(), "already connected") {
		return nil
	}
	return classify(rpcConnectPeer, c.cfg, err)
}

// OpenChannel opens a public channel of localSat satoshis to the connected
// peer pubkeyHex, pushing nothing, and returns the funding transaction id once
// it is broadcast. The channel is usable after confirmations. Needs
// onchain:write and offchain:write.
func (c *Client) OpenChannel(ctx context.Context, pubkeyHex string, localSat int64) (string, error) {
	pub, err := hex.DecodeString(pubkeyHex)
	if err != nil || len(pub) != 33 {
		return "", fmt.Errorf("open channel: peer key %q is not 33 hex bytes", pubkeyHex)
	}
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	cp, err := c.ln.OpenChannelSync(ctx, &lnrpc.OpenChannelRequest{
		NodePubkey:         pub,
		LocalFundingAmount: localSat,
	})
	if err != nil {
		return "", classify(rpcOpenChannel, c.cfg, err)
	}
	txid := cp.GetFundingTxidStr()
	if txid == "" {
		// LND returns the txid as bytes in reversed (internal) order.
		b := cp.GetFundingTxidBytes()
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		txid = hex.EncodeToString(r)
	}
	return txid, nil
}

// Channels lists the node's open channels. Needs offchain:read.
func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := c.ln.ListChannels(ctx, &lnrpc.ListChannelsRequest{})
	if err != nil {
		return nil, classify(rpcListChannels, c.cfg, err)
	}
	out := make([]Channel, 0, len(resp.Channels))
	for _, ch := range resp.Channels {
		out = append(out, Channel{
			RemotePubkey: ch.RemotePubkey,
			ChannelPoint: ch.ChannelPoint,
			Active:       ch.Active,
			CapacitySat:  ch.Capacity,
			LocalSat:     ch.LocalBalance,
			RemoteSat:    ch.RemoteBalance,
		})
	}
	return out, nil
}

// ChannelBalance sums the balances of the node's open channels. Needs
// offchain:read.
func (c *Client) ChannelBalance(ctx context.Context) (Balance, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return Balance{}, err
	}
	defer cancel()
	resp, err := c.ln.ChannelBalance(ctx, &lnrpc.ChannelBalanceRequest{})
	if err != nil {
		return Balance{}, classify(rpcChannelBalance, c.cfg, err)
	}
	var b Balance
	if resp.LocalBalance != nil {
		b.LocalSat = int64(resp.LocalBalance.Sat)
	}
	if resp.RemoteBalance != nil {
		b.RemoteSat = int64(resp.RemoteBalance.Sat)
	}
	return b, nil
}

// QueryRoute asks LND for a route that can carry amtSat satoshis to the node
// destPubkey now, counting the live outbound capacity of our own channels, and
// returns the route's total fee in satoshis. No route gives ErrNoRoute or
// ErrInsufficientBalance. Nothing is paid. Needs offchain:read.
func (c *Client) QueryRoute(ctx context.Context, destPubkey string, amtSat int64) (int64, error) {
	if amtSat <= 0 {
		return 0, fmt.Errorf("query route: amount %d sat: must be positive", amtSat)
	}
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := c.ln.QueryRoutes(ctx, &lnrpc.QueryRoutesRequest{PubKey: destPubkey, Amt: amtSat})
	if err != nil {
		return 0, classify(rpcQueryRoutes, c.cfg, err)
	}
	if len(resp.Routes) == 0 {
		return 0, fmt.Errorf("lnd QueryRoutes: %w", ErrNoRoute)
	}
	return resp.Routes[0].TotalFees, nil
}

package node

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/voucher"
)

// publishFirst publishes the node's first advert. The first node of a
// network has nobody to store its provider records yet, so a failure is
// retried in the background while others join.
func (n *Node) publishFirst(ctx context.Context) error {
	var ks []*voucher.Keyset
	if n.pay() != nil && n.pay().mint != nil {
		ks = n.pay().mint.Keysets()
	}
	ad, err := n.advert(ks)
	if err != nil {
		return err
	}
	n.advertised.Store(true)
	if err := n.disc.Publish(ctx, ad); err != nil {
		n.log.Info("advert not published yet; retrying", "err", err)
		n.wg.Add(1)
		go n.publishLoop(ad)
		return nil
	}
	n.log.Info("advert published")
	return nil
}

// onKeysets is the mint's OnKeysets: after a keyset rotation the advert is
// published again with the new keysets. The first advert (publishFirst)
// already carries the keysets the mint starts with.
func (n *Node) onKeysets(ks []*voucher.Keyset) {
	if !n.advertised.Load() {
		return
	}
	ad, err := n.advert(ks)
	if err != nil {
		n.log.Error("advert with new keysets", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	if err := n.disc.Publish(ctx, ad); err != nil {
		n.log.Warn("republish advert with new keysets", "err", err)
	}
}

// publishLoop retries the first publication with backoff until it succeeds
// or the node stops; after that discovery republishes on its own schedule.
func (n *Node) publishLoop(ad discovery.Advert) {
	defer n.wg.Done()
	wait := 500 * time.Millisecond
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		err := n.disc.Publish(ctx, ad)
		cancel()
		if err == nil {
			n.log.Info("advert published")
			return
		}
		n.log.Debug("advert not published yet", "err", err)
		wait = min(2*wait, 30*time.Second)
	}
}

// advert describes this node for discovery.
func (n *Node) advert(keysets []*voucher.Keyset) (discovery.Advert, error) {
	ad := discovery.Advert{
		Peer:     n.host.ID(),
		OnionKey: n.onion.Public(),
		Prices:   map[discovery.Role]uint64{},
		Addrs:    n.host.Addrs(),
	}
	if n.cfg.Has(RoleRelay) {
		ad.Roles = append(ad.Roles, discovery.RoleRelay)
		ad.Prices[discovery.RoleRelay] = n.cfg.Discovery.PriceSatPerMB[RoleRelay]
	}
	if n.cfg.Has(RoleExit) {
		ad.Roles = append(ad.Roles, discovery.RoleExit)
		ad.Prices[discovery.RoleExit] = n.cfg.Discovery.PriceSatPerMB[RoleExit]
		ad.ExitPorts = n.exitPorts
	}
	if n.cfg.Has(RoleMempool) {
		ad.Roles = append(ad.Roles, discovery.RoleMempool)
		ad.Prices[discovery.RoleMempool] = n.cfg.Discovery.PriceSatPerMB[RoleMempool]
	}
	if n.cfg.Has(RoleRendezvous) {
		ad.Roles = append(ad.Roles, discovery.RoleRendezvous)
		ad.Prices[discovery.RoleRendezvous] = n.cfg.Discovery.PriceSatPerMB[RoleRendezvous]
	}
	if n.cfg.Has(RoleTorGateway) {
		ad.Roles = append(ad.Roles, discovery.RoleTorGateway)
		ad.Prices[discovery.RoleTorGateway] = n.cfg.Discovery.PriceSatPerMB[RoleTorGateway]
	}
	for _, s := range n.cfg.Discovery.Family {
		if id, err := peer.Decode(s); err == nil {
			ad.Family = append(ad.Family, id)
		}
	}
	if n.pay() != nil && n.pay().mint != nil {
		ad.Payee = n.pay().lnd.Info().IdentityPubkey
		for _, k := range keysets {
			dk, err := keysetToAdvert(k)
			if err != nil {
				return discovery.Advert{}, fmt.Errorf("advert keyset: %w", err)
			}
			ad.Keysets = append(ad.Keysets, dk)
		}
	}
	return ad, nil
}

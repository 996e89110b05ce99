package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// newHost builds the node's libp2p host: TCP and QUIC, Noise only, yamux,
// a fixed resource-manager limit, and none of the features that reach out on
// their own (no relay client, no NAT port mapping, no AutoNAT service, no
// mDNS — mDNS is a separate service we never start). Listen and announce
// addresses come from the config.
func newHost(priv crypto.PrivKey, cfg NetworkConfig) (host.Host, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	scaled := limits.AutoScale()
	conns := rcmgr.LimitVal(cfg.MaxConns)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{Conns: conns, ConnsInbound: conns, ConnsOutbound: conns},
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(scaled)))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(rm),
		libp2p.UserAgent("co-infuse/" + Version),
	}
	if !cfg.AllowPrivatePeers {
		opts = append(opts, libp2p.ConnectionGater(publicOnly{}))
	}
	if len(cfg.Announce) > 0 {
		announce := make([]ma.Multiaddr, 0, len(cfg.Announce))
		for _, s := range cfg.Announce {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				rm.Close()
				return nil, fmt.Errorf("network.announce: %w", err)
			}
			announce = append(announce, a)
		}
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}

// Version is the co-infuse release, printed by `co-infuse version`.
const Version = "0.1.0-dev"

// publicOnly refuses outbound dials to non-public addresses. A relay dials
// whatever addresses an EXTEND names; without this a client could use it to
// probe the relay's own network.
type publicOnly struct{}

var _ connmgr.ConnectionGater = publicOnly{}

func (publicOnly) InterceptPeerDial(peer.ID) bool { return true }
func (publicOnly) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool {
	return manet.IsPublicAddr(a)
}
func (publicOnly) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (publicOnly) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (publicOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

package node

import (
	"fmt"
	"net/netip"

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

	"github.com/co-infuse/co-infuse/internal/netclass"
)

// newHost builds the node's libp2p host: TCP and QUIC, Noise only, yamux,
// a fixed resource-manager limit, and none of the features that reach out on
// their own (no relay client, no NAT port mapping, no AutoNAT service, no
// mDNS — mDNS is a separate service we never start). Listen and announce
// addresses come from the config.
//
// Only relays and exits (public) say "co-infuse/<version>" in identify; a
// pure client keeps go-libp2p's default user agent, so the DHT servers it
// queries cannot tell it from any other libp2p program by that.
func newHost(priv crypto.PrivKey, cfg NetworkConfig, public bool) (host.Host, error) {
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
	}
	if public {
		opts = append(opts, libp2p.UserAgent("co-infuse/"+Version))
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

// Version is the co-infuse release, printed by `co-infuse version`. A
// variable only so that a release build can stamp it at link time
// (-ldflags -X, docker/Dockerfile); nothing assigns it at run time.
var Version = "0.1.0-dev"

// publicOnly refuses outbound dials to non-public addresses. A relay dials
// whatever addresses an EXTEND names; without this a client could use it to
// probe the relay's own network. It refuses what the exit refuses before
// any rule (internal/netclass), NAT64 and 6to4 forms of private addresses
// included.
type publicOnly struct{}

var _ connmgr.ConnectionGater = publicOnly{}

func (publicOnly) InterceptPeerDial(peer.ID) bool { return true }
func (publicOnly) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool {
	return publicAddr(a)
}
func (publicOnly) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (publicOnly) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (publicOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// publicAddr judges a multiaddr by its first address component: an IP
// address by netclass, a zone as link-local, a DNS name as go-multiaddr
// does (localhost and special-use names are not public; the swarm dials
// only the addresses a name resolves to, and those come here again). A
// multiaddr with no address component is not public.
func publicAddr(a ma.Multiaddr) bool {
	for _, c := range a {
		switch c.Code() {
		case ma.P_IP4, ma.P_IP6:
			ip, ok := netip.AddrFromSlice(c.RawValue())
			return ok && netclass.IsPublic(ip)
		case ma.P_IP6ZONE:
			return false
		case ma.P_DNS, ma.P_DNS4, ma.P_DNS6, ma.P_DNSADDR:
			return manet.IsPublicAddr(a)
		}
	}
	return false
}

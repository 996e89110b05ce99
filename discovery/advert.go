package discovery

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Keyset is one mint keyset a node's voucher mint signs with. The voucher
// package produces it; discovery carries it opaquely, bounded in size.
type Keyset struct {
	// ID names the keyset (1..MaxKeysetIDLen bytes).
	ID []byte
	// Denominations in satoshis, at most MaxDenominations.
	Denominations []uint64
	// PublicKeys are DER/PKIX keys, at most MaxKeysetKeys of at most
	// MaxMintKeySize bytes each; their meaning is the voucher package's.
	PublicKeys [][]byte
	// NotBefore is when the keyset starts minting and redeeming, MintUntil
	// when it stops minting (second precision).
	NotBefore, MintUntil time.Time
	// NotAfter is when the mint stops redeeming the keyset (second precision).
	NotAfter time.Time
}

// Advert is a node's service record. It is what Publish signs and what Find
// and SelectPath return, after the signature, key binding, expiry and
// sequence number have been checked. Times have second precision.
type Advert struct {
	// Peer is the node's libp2p identity; the advert is signed by its key.
	Peer peer.ID
	// Roles the node offers, at most MaxRoles.
	Roles []Role
	// Prices per role in satoshis per MB relayed. After decoding it has an
	// entry for every role (0 for a role with no price).
	Prices map[Role]uint64
	// MinPrepaySat is the smallest prepayment the node accepts, in satoshis.
	MinPrepaySat uint64
	// OnionKey is the node's X25519 static key for circuit handshakes
	// (PROTOCOL.md §4).
	OnionKey [32]byte
	// Payee is the node's Lightning node key (66 hex digits), the payee
	// every voucher invoice must name; empty when the node sells no
	// vouchers. Signed with the rest, so a client pays only the key the
	// node published to everyone.
	Payee string
	// Keysets of the node's voucher mint.
	Keysets []Keyset
	// ExitPorts summarises the exit policy: ports it may allow. Empty means
	// no exit traffic.
	ExitPorts []PortRange
	// Family lists other nodes the same operator runs. Never two hops of one
	// family in a path.
	Family []peer.ID
	// Addrs are the node's listen addresses.
	Addrs []ma.Multiaddr
	// CapacityKBps is the node's self-reported forwarding capacity.
	CapacityKBps uint32
	// Seq increases with every new advert from this node; clients refuse a
	// lower one (replay). Publish fills it in when zero.
	Seq uint64
	// Expiry is when the advert stops being valid. Publish fills it in when
	// zero (now + AdvertTTL).
	Expiry time.Time
	// Stake proves that Payee's Lightning node runs this node (stake.go);
	// zero when the node is unstaked. Publish fills it in when
	// Config.SignStake is set.
	Stake StakeProof
}

// HasRole reports whether the advert offers role r.
func (a Advert) HasRole(r Role) bool { return slices.Contains(a.Roles, r) }

// Price returns the advert's price for role r in sat/MB.
func (a Advert) Price(r Role) uint64 { return a.Prices[r] }

// AllowsPort reports whether the exit policy summary may allow port.
func (a Advert) AllowsPort(port uint16) bool {
	for _, r := range a.ExitPorts {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// Fresh reports whether the advert has not expired at now.
func (a Advert) Fresh(now time.Time) bool { return now.Before(a.Expiry) }

// Clone returns a deep copy, so callers may keep or change adverts handed out
// by the Service without racing it.
func (a Advert) Clone() Advert {
	c := a
	c.Roles = slices.Clone(a.Roles)
	if a.Prices != nil {
		c.Prices = make(map[Role]uint64, len(a.Prices))
		for k, v := range a.Prices {
			c.Prices[k] = v
		}
	}
	c.Keysets = make([]Keyset, len(a.Keysets))
	for i, k := range a.Keysets {
		c.Keysets[i] = Keyset{
			ID:            slices.Clone(k.ID),
			Denominations: slices.Clone(k.Denominations),
			NotBefore:     k.NotBefore,
			MintUntil:     k.MintUntil,
			NotAfter:      k.NotAfter,
		}
		for _, pk := range k.PublicKeys {
			c.Keysets[i].PublicKeys = append(c.Keysets[i].PublicKeys, slices.Clone(pk))
		}
	}
	if a.Keysets == nil {
		c.Keysets = nil
	}
	c.ExitPorts = slices.Clone(a.ExitPorts)
	c.Family = slices.Clone(a.Family)
	c.Addrs = slices.Clone(a.Addrs)
	return c
}

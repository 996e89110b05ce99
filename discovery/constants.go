package discovery

import "time"

// Size caps of the advert encoding (DISCOVERY.md §3). Everything a peer
// controls is bounded by these before it is parsed or stored.
const (
	// MaxEnvelopeSize bounds a whole signed advert on the wire and on disk.
	MaxEnvelopeSize = 32 << 10
	// MaxPublicKeySize bounds the marshalled libp2p public key (RSA-4096 fits).
	MaxPublicKeySize = 800
	// MaxSignatureSize bounds the signature (RSA-4096 fits).
	MaxSignatureSize = 600
	// MaxPeerIDLen bounds a binary peer ID.
	MaxPeerIDLen = 64
	// MaxRoles bounds the roles in one advert.
	MaxRoles = 8
	// MaxRoleLen bounds a role name.
	MaxRoleLen = 32
	// MaxKeysets bounds mint keysets (current and next rotation, with room).
	MaxKeysets = 4
	// MaxKeysetIDLen bounds a keyset ID.
	MaxKeysetIDLen = 64
	// MaxDenominations bounds denominations per keyset.
	MaxDenominations = 32
	// MaxKeysetKeys bounds public keys per keyset.
	MaxKeysetKeys = 32
	// PayeeLen is the size of a Lightning node key (compressed secp256k1).
	PayeeLen = 33
	// MaxMintKeySize bounds one mint public key (DER/PKIX, RSA-4096 fits).
	MaxMintKeySize = 1024
	// MaxPortRanges bounds exit policy ranges.
	MaxPortRanges = 64
	// MaxFamily bounds declared family members.
	MaxFamily = 32
	// MaxAddrs bounds listen addresses.
	MaxAddrs = 16
	// MaxAddrLen bounds one binary multiaddr.
	MaxAddrLen = 256
)

// Time limits.
const (
	// MaxAdvertLifetime is how far in the future an advert's expiry may be.
	// A longer-lived advert is refused (ErrTooFarAhead): a node must re-sign
	// at least this often, which bounds how long a stale price survives.
	MaxAdvertLifetime = 48 * time.Hour
	// DefaultAdvertTTL is the expiry Publish gives an advert with none.
	DefaultAdvertTTL = 6 * time.Hour
	// DefaultRepublish is how often Publish re-signs and re-provides.
	DefaultRepublish = time.Hour
	// DefaultFetchTimeout bounds fetching one advert from one peer.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultFailBackoff is how long a node that failed (Report ok=false or
	// an unreachable advert) is left out of new paths.
	DefaultFailBackoff = 10 * time.Minute
	// DefaultAgeRamp is the time since first seen after which a node gets
	// full age weight (see select.go).
	DefaultAgeRamp = 7 * 24 * time.Hour
	// DefaultGuardLifetime is how long an entry guard is kept before it is
	// rotated out even if it keeps working.
	DefaultGuardLifetime = 60 * 24 * time.Hour
	// bootstrapWait bounds how long Start waits for the first routing
	// table entry after connecting to bootstrap peers.
	bootstrapWait = 10 * time.Second
	// equivocationBackoff is how long a node caught equivocating is
	// ignored.
	equivocationBackoff = 7 * 24 * time.Hour
	// defaultWitnesses is how many known peers CrossCheck asks by default.
	defaultWitnesses = 5
	// flushInterval is how often changed peer records are written to disk.
	flushInterval = 5 * time.Second
	// refindInterval spaces the DHT queries SelectPath makes on its own.
	refindInterval = 30 * time.Second
	// DefaultGuardUnlisted is how long a guard may be without a fresh advert
	// before it is dropped.
	DefaultGuardUnlisted = 7 * 24 * time.Hour
)

// Memory and disk bounds.
const (
	// DefaultMaxKnown bounds the adverts held in memory and on disk.
	DefaultMaxKnown = 4096
	// DefaultMaxProviders bounds provider records one Find looks at.
	DefaultMaxProviders = 512
	// DefaultFetchParallel bounds concurrent advert fetches per Find.
	DefaultFetchParallel = 16
	// DefaultMaxDHTRecords bounds the provider and value records other peers
	// can make this node's DHT server store.
	DefaultMaxDHTRecords = 100000
	// maxBadPeers bounds the negative cache of peers whose adverts failed.
	maxBadPeers = 4096
	// capacityCapKBps caps self-reported capacity in path weights, so a
	// lying node gains little by claiming more.
	capacityCapKBps = 10 * 1024
)

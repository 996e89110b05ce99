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
	// MaxStakeSigLen bounds a stake proof's zbase32 signature (lnd's are
	// 104 characters).
	MaxStakeSigLen = 160
)

// Stake rule (DISCOVERY.md §7).
const (
	// StakeCapSat caps the effective stake that counts: a node with 0.5 BTC
	// of 90-day-old public channels weighs as much as any whale.
	StakeCapSat = 50_000_000
	// StakeFullAgeBlocks is the channel age (about 90 days of blocks) at
	// which a channel's capacity counts in full; younger channels count
	// in proportion to their age.
	StakeFullAgeBlocks = 12960
	// UnstakedWeight is the stake factor of a node with no verified stake:
	// 1/500 of a capped node, the weight of 100,000 sat staked for 90 days.
	UnstakedWeight = 0.002
	// UnstakedMaxShare bounds what all unstaked nodes together weigh in
	// one position: at most this fraction of the staked nodes' weight
	// there. The floor above is per node, so without this bound a Sybil
	// renting addresses in many /16s gets weight for free, linear in its
	// identities (1,000 /16s: 2 capped nodes' worth, 100 M sat). In a
	// pick fewer than StakedQuorum staked families fit (devnet, before
	// relays stake) it does not apply.
	UnstakedMaxShare = 0.02
	// MinStakeSat is the effective stake below which a node counts as
	// unstaked (weight, share bound, staked ends, quorum): 2 % of
	// StakeCapSat, 0.01 BTC in 90-day-old channels or the same
	// bitcoin-time otherwise (0.1 BTC for 9 days). A node of this stake
	// weighs 10x the unstaked floor. Each identity that is to count as
	// staked locks that much bitcoin-time, and StakedQuorum identities
	// (the price of making the ends staked-only on a network where no
	// honest relay stakes) lock 0.1 BTC for 90 days.
	MinStakeSat = 1_000_000
	// StakedQuorum is how many staked families a position needs (distinct
	// Lightning nodes, home /16s and declared families, counted among the
	// candidates that fit the pick) before the staked-ends rule and
	// UnstakedMaxShare apply there. With fewer, the position is chosen
	// as on a network without stake, staked nodes weighted by stake but
	// each family held to FamilyMaxShare, so a few stakers cannot take
	// every end of a network where honest relays do not stake yet. It is
	// 1/FamilyMaxShare: the quorum alone can fill a staked-only position
	// with no family above the cap.
	StakedQuorum = 10
	// FamilyMaxShare caps the share of a position's weight one staked
	// family (one Lightning node, however many identities) gets, or
	// 1/n of a position n families and unstaked nodes fill when that is
	// more (a small network). Weight a family loses goes to the others in
	// proportion to theirs. Whales gain nothing beyond it, nor the first
	// stakers of a network that does not stake yet.
	FamilyMaxShare = 0.10
	// StakeProofLifetime is how long a node's own stake proof is valid.
	StakeProofLifetime = 14 * 24 * time.Hour
	// MaxStakeLifetime bounds a proof's expiry ahead of now; a longer one
	// counts as no proof.
	MaxStakeLifetime = 31 * 24 * time.Hour
	// DefaultStakeMaxStale is how long a verified stake counts without
	// LND confirming it again (the client's LND may be offline).
	DefaultStakeMaxStale = 14 * 24 * time.Hour
	// stakeRenew: a node re-signs its proof when it expires sooner.
	stakeRenew = 7 * 24 * time.Hour
	// stakeRecheck is how often a client re-reads a staked node's channels.
	stakeRecheck = 24 * time.Hour
	// stakeCheckTimeout bounds one LND call of the stake rule.
	stakeCheckTimeout = 10 * time.Second
	// maxStakePeers bounds the counterparties a stake verdict remembers
	// (stakeByPeer).
	maxStakePeers = 64
	// stakeParallel bounds concurrent stake checks.
	stakeParallel = 4
	// stakeLoopInterval spaces background stake checks.
	stakeLoopInterval = time.Minute
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
	// DefaultViewRefresh is Config.ViewRefresh's default.
	DefaultViewRefresh = 10 * time.Minute
	// DefaultAgeRamp is the time since first seen after which a node gets
	// full age weight (see select.go).
	DefaultAgeRamp = 7 * 24 * time.Hour
	// DefaultGuardLifetime is the lifetime of a guard entry from a cache
	// written before lifetimes were randomised (guardLifetimeMin..Max).
	DefaultGuardLifetime = 60 * 24 * time.Hour
	// bootstrapWait bounds how long Start waits for the first routing
	// table entry after connecting to bootstrap peers.
	bootstrapWait = 10 * time.Second
	// equivocationBackoff is how long a node caught equivocating is
	// ignored.
	equivocationBackoff = 7 * 24 * time.Hour
	// defaultWitnesses is how many known peers CrossCheck asks by default.
	defaultWitnesses = 5
	// crossCheckCover is the size of the set of nodes CrossCheck asks each
	// witness about (the node checked and decoys), so a witness cannot
	// tell which one the client is about to pay.
	crossCheckCover = 8
	// crossCheckTimeout bounds one witness answer.
	crossCheckTimeout = 3 * time.Second
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
	// maxSampledGuards bounds the sampled guard set (Tor: a fraction of the
	// network; here a fixed small number).
	maxSampledGuards = 20
	// guardLifetimeMin and guardLifetimeMax bound a guard's randomised
	// lifetime, so guards chosen together do not all rotate at once.
	guardLifetimeMin = 30 * 24 * time.Hour
	guardLifetimeMax = 60 * 24 * time.Hour
	// guardRefreshInterval spaces the refresh of guards' adverts.
	guardRefreshInterval = 20 * time.Minute
	// guardRefreshAhead: a guard advert expiring sooner is fetched again.
	guardRefreshAhead = 3 * time.Hour
	// maxPerResponder bounds the provider records one DHT server (or our
	// own provider store) contributes to one lookup.
	maxPerResponder = 16
	// responderTimeout bounds one DHT server's provider answer.
	responderTimeout = 5 * time.Second
	// closestTimeout bounds the closest-peers walk of one lookup.
	closestTimeout = 10 * time.Second
	// candidateTimeout bounds fetching one candidate's advert in a lookup,
	// so tarpit providers cost at most this each, in parallel.
	candidateTimeout = 3 * time.Second
	// finalRedraws bounds how often pickPath redraws a final hop that
	// conflicts with every guard.
	finalRedraws = 16
)

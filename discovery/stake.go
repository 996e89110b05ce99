package discovery

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Lightning stake (DISCOVERY.md §7). A node proves that the Lightning node
// its advert names (Advert.Payee) is run by the same operator: lnd's
// SignMessage over StakeMessage, carried in the advert as Advert.Stake. A
// client checks the proof with its own LND (VerifyMessage recovers the
// signer) and reads the signer's public channels from its own LND's graph.
// Selection weights every hop by that stake, age-weighted and capped; nodes
// proving the same Lightning node are one family and share one stake.

// StakeProof is a Lightning node's signature over StakeMessage(Peer, Payee,
// Expiry), made by lnd SignMessage (zbase32 text). The zero value means no
// proof: the node is unstaked.
type StakeProof struct {
	// Expiry is when the proof stops counting (second precision), at most
	// MaxStakeLifetime after it was made.
	Expiry time.Time
	// Sig is lnd's zbase32 signature, 1..MaxStakeSigLen characters.
	Sig string
}

// IsZero reports whether p is absent.
func (p StakeProof) IsZero() bool { return p.Sig == "" }

// StakeChannel is one public channel of a Lightning node as the client's
// own LND graph has it.
type StakeChannel struct {
	// CapacitySat is the channel capacity in satoshis.
	CapacitySat int64
	// FundingHeight is the block height of the funding transaction (the
	// top 24 bits of the short channel id).
	FundingHeight uint32
	// Peer is the Lightning node at the channel's other end ("" if
	// unknown). A channel between two staked nodes counts half for each.
	Peer string
}

// stakeDomain starts every stake message, so a stake signature cannot be
// mistaken for any other message a Lightning node signs.
const stakeDomain = "co-infuse stake v1"

// StakeMessage is the text a Lightning node signs to stake itself on the
// libp2p node p until expiry. It names both keys, so a proof can neither be
// moved to another libp2p node nor claimed for another Lightning node.
func StakeMessage(p peer.ID, payee string, expiry time.Time) []byte {
	return []byte(stakeDomain + ": lightning node " + payee + " runs co-infuse node " + p.String() +
		" until " + strconv.FormatInt(expiry.Unix(), 10))
}

// zbase32 is the alphabet of lnd's signatures.
const zbase32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

func validStakeSig(sig string) bool {
	if len(sig) == 0 || len(sig) > MaxStakeSigLen {
		return false
	}
	for i := 0; i < len(sig); i++ {
		if strings.IndexByte(zbase32, sig[i]) < 0 {
			return false
		}
	}
	return true
}

// stakeRecord is a client's verdict on one node's stake proof, kept with the
// peer record and persisted, so selection never needs LND online.
type stakeRecord struct {
	// Sig and ProofExpiry identify the proof checked; a new proof is
	// checked again.
	Sig         string    `json:"sig"`
	ProofExpiry time.Time `json:"proof_expiry"`
	// Node is the Lightning node the proof verified for ("" if refused).
	Node string `json:"node,omitempty"`
	// CapacitySat sums the node's public channels; EffectiveSat weights
	// each by its age (see effectiveStake). Both 0 if refused.
	CapacitySat  int64 `json:"capacity_sat"`
	EffectiveSat int64 `json:"effective_sat"`
	Channels     int   `json:"channels"`
	// Peers is the effective stake of the channels with each of the
	// maxStakePeers largest counterparties (node key → sat), so that a
	// channel between two staked nodes is counted once (stakeShared).
	Peers map[string]int64 `json:"peers,omitempty"`
	// CheckedAt is when LND last confirmed the graph view.
	CheckedAt time.Time `json:"checked_at"`
	// Err says why the proof was refused ("" if it verified).
	Err string `json:"err,omitempty"`
}

// effectiveStake is the stake a node's channels give it: each channel's
// capacity times min(1, age/StakeFullAge), age counted in blocks from its
// funding transaction to best. Fresh channels count nearly nothing, so a
// Sybil must lock bitcoin for months per identity.
func effectiveStake(chans []StakeChannel, best uint32) (capacity, effective int64) {
	for _, c := range chans {
		if c.CapacitySat <= 0 {
			continue
		}
		capacity += c.CapacitySat
		var age uint32
		if best > c.FundingHeight {
			age = best - c.FundingHeight
		}
		f := min(float64(age)/StakeFullAgeBlocks, 1)
		effective += int64(float64(c.CapacitySat) * f)
	}
	return capacity, effective
}

// stakeByPeer sums the effective stake of chans per counterparty and keeps
// the maxStakePeers largest.
func stakeByPeer(chans []StakeChannel, best uint32) map[string]int64 {
	all := map[string]int64{}
	for _, c := range chans {
		if c.Peer == "" {
			continue
		}
		_, eff := effectiveStake([]StakeChannel{c}, best)
		all[c.Peer] += eff
	}
	if len(all) <= maxStakePeers {
		return all
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(all[b], all[a]) })
	out := make(map[string]int64, maxStakePeers)
	for _, k := range keys[:maxStakePeers] {
		out[k] = all[k]
	}
	return out
}

// stakeShared is the part of a node's effective stake that lies in
// channels with other Lightning nodes in staked (the nodes whose stake
// this client counts now), halved: each end of such a channel counts half
// of it, so an operator gains nothing by opening channels between its own
// staked nodes (each satoshi locked counts once, as in a channel to anyone
// else).
func stakeShared(sr *stakeRecord, self string, staked map[string]bool) int64 {
	var shared int64
	for p, eff := range sr.Peers {
		if p != self && staked[p] {
			shared += eff
		}
	}
	return shared / 2
}

// stakeWeight maps effective stake to the selection factor: linear up to
// StakeCapSat (whales gain nothing beyond it), never below UnstakedWeight.
func stakeWeight(effectiveSat int64) float64 {
	return max(float64(min(effectiveSat, StakeCapSat))/StakeCapSat, UnstakedWeight)
}

// currentStake returns the verified Lightning node and effective stake of
// st at now: nothing when the advert has no proof, the proof expired, the
// check refused it, or the check is older than StakeMaxStale.
func currentStake(st *peerState, now time.Time, maxStale time.Duration) (node string, eff int64) {
	if st.ad == nil || st.ad.Stake.IsZero() || st.rec.Stake == nil {
		return "", 0
	}
	sr := st.rec.Stake
	if sr.Sig != st.ad.Stake.Sig || sr.Node == "" || sr.Node != st.ad.Payee ||
		!proofLive(st.ad.Stake, now) || now.Sub(sr.CheckedAt) > maxStale {
		return "", 0
	}
	return sr.Node, sr.EffectiveSat
}

// stakesLocked returns the Lightning node and effective stake of every
// peer whose stake counts now, each reduced by stakeShared. s.mu held.
func (s *Service) stakesLocked(now time.Time) map[peer.ID]nodeStake {
	out := map[peer.ID]nodeStake{}
	staked := map[string]bool{}
	for id, st := range s.peers {
		if node, eff := currentStake(st, now, s.cfg.StakeMaxStale); node != "" {
			out[id] = nodeStake{node, eff}
			staked[node] = true
		}
	}
	for id, ns := range out {
		ns.eff = max(0, ns.eff-stakeShared(s.peers[id].rec.Stake, ns.node, staked))
		out[id] = ns
	}
	return out
}

// nodeStake is a peer's verified Lightning node and the stake it counts.
type nodeStake struct {
	node string
	eff  int64
}

// proofLive reports whether p has not expired at now and does not expire
// more than MaxStakeLifetime ahead (a proof meant to outlive key changes).
func proofLive(p StakeProof, now time.Time) bool {
	return now.Before(p.Expiry) && p.Expiry.Sub(now) <= MaxStakeLifetime
}

// needsStakeCheck reports whether st carries a proof this client has not
// checked, or checked longer than stakeRecheck ago.
func needsStakeCheck(st *peerState, now time.Time) bool {
	if st.ad == nil || st.ad.Stake.IsZero() || st.ad.Payee == "" || !proofLive(st.ad.Stake, now) {
		return false
	}
	sr := st.rec.Stake
	return sr == nil || sr.Sig != st.ad.Stake.Sig || now.Sub(sr.CheckedAt) > stakeRecheck
}

// checkStake verifies ad's stake proof with the client's LND and reads the
// node's channels. A refused proof gives a record with Err set and a nil
// error; an error means LND could not answer (keep the old verdict).
func (s *Service) checkStake(ctx context.Context, ad *Advert) (*stakeRecord, error) {
	now := s.cfg.Now()
	rec := &stakeRecord{Sig: ad.Stake.Sig, ProofExpiry: ad.Stake.Expiry, CheckedAt: now}
	ctx, cancel := context.WithTimeout(ctx, stakeCheckTimeout)
	defer cancel()
	signer, err := s.cfg.VerifyStake(ctx, StakeMessage(ad.Peer, ad.Payee, ad.Stake.Expiry), ad.Stake.Sig)
	if err != nil {
		return nil, fmt.Errorf("verify stake: %w", err)
	}
	switch {
	case signer == "":
		rec.Err = "signature does not verify"
		return rec, nil
	case signer != ad.Payee:
		rec.Err = "signed by another lightning node than the advert names"
		return rec, nil
	}
	chans, best, err := s.cfg.NodeChannels(ctx, signer)
	if err != nil {
		return nil, fmt.Errorf("node channels: %w", err)
	}
	if len(chans) == 0 {
		rec.Err = "no public channels in our graph"
		return rec, nil
	}
	rec.Node = signer
	rec.Channels = len(chans)
	rec.CapacitySat, rec.EffectiveSat = effectiveStake(chans, best)
	rec.Peers = stakeByPeer(chans, best)
	return rec, nil
}

// CheckStakes verifies, with the client's LND, every stake proof that is
// new or was last checked more than a day ago, at most stakeParallel at a
// time, and records the verdicts (persisted with the peers). Proofs LND
// cannot check now (offline) keep their last verdict until StakeMaxStale.
// It returns how many proofs it checked; without VerifyStake and
// NodeChannels in Config it does nothing. The Service runs it in the
// background; tests and `peers` may call it directly.
func (s *Service) CheckStakes(ctx context.Context) int {
	if s.cfg.VerifyStake == nil || s.cfg.NodeChannels == nil {
		return 0
	}
	now := s.cfg.Now()
	var todo []*Advert
	s.mu.Lock()
	for _, st := range s.peers {
		if needsStakeCheck(st, now) {
			ad := st.ad.Clone()
			todo = append(todo, &ad)
		}
	}
	s.mu.Unlock()
	sem := make(chan struct{}, stakeParallel)
	done := make(chan struct{}, len(todo))
	for _, ad := range todo {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			rec, err := s.checkStake(ctx, ad)
			if err != nil {
				s.log.Debug("stake check postponed", "peer", ad.Peer, "err", err)
				return
			}
			if rec.Err != "" {
				s.log.Debug("stake proof refused", "peer", ad.Peer, "reason", rec.Err)
			}
			s.mu.Lock()
			if st := s.peers[ad.Peer]; st != nil && st.ad != nil && st.ad.Stake.Sig == rec.Sig {
				st.rec.Stake = rec
				s.dirty[ad.Peer] = true
			}
			s.mu.Unlock()
		}()
	}
	for range todo {
		<-done
	}
	return len(todo)
}

// stakeLoop runs CheckStakes every stakeLoopInterval and when kicked (a new
// advert with a proof arrived). Owned by the Service; stops with s.ctx.
func (s *Service) stakeLoop() {
	defer s.wg.Done()
	t := time.NewTicker(stakeLoopInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.stakeKick:
		}
		s.CheckStakes(s.ctx)
	}
}

// ownStakeFresh returns the stake proof to put in our own advert for
// payee, or zero when none is cached or it expires within stakeRenew.
func (s *Service) ownStakeFresh(payee string, now time.Time) (StakeProof, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ownStake
	if p.IsZero() || s.ownStakePayee != payee || p.Expiry.Sub(now) < stakeRenew {
		return StakeProof{}, false
	}
	return p, true
}

// refreshOwnStake asks our LND (Config.SignStake) for a new stake proof for
// payee when the cached one is missing or close to expiry. Failure is
// logged and leaves the advert unstaked (or with the old proof while valid).
func (s *Service) refreshOwnStake(ctx context.Context, payee string) {
	if s.cfg.SignStake == nil || payee == "" {
		return
	}
	now := s.cfg.Now()
	if _, ok := s.ownStakeFresh(payee, now); ok {
		return
	}
	exp := now.Add(StakeProofLifetime).Truncate(time.Second)
	ctx, cancel := context.WithTimeout(ctx, stakeCheckTimeout)
	defer cancel()
	sig, err := s.cfg.SignStake(ctx, StakeMessage(s.h.ID(), payee, exp))
	if err != nil || !validStakeSig(sig) {
		s.log.Warn("stake proof not signed; the advert goes out unstaked", "err", err)
		return
	}
	s.mu.Lock()
	s.ownStake, s.ownStakePayee = StakeProof{Expiry: exp, Sig: sig}, payee
	s.mu.Unlock()
}

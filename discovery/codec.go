package discovery

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/crypto/cryptobyte"
)

// encodeBody returns the canonical body encoding of ad (DISCOVERY.md §3.2).
// Roles, family and port ranges are sorted; it fails on anything the decoder
// would refuse, so every encoded advert decodes.
func encodeBody(ad *Advert) ([]byte, error) {
	if err := checkAdvert(ad); err != nil {
		return nil, err
	}
	roles := slices.Clone(ad.Roles)
	slices.Sort(roles)
	ports := slices.Clone(ad.ExitPorts)
	slices.SortFunc(ports, func(a, b PortRange) int { return cmp.Compare(a.Lo, b.Lo) })
	fam := slices.Clone(ad.Family)
	slices.Sort(fam)

	var b cryptobyte.Builder
	// §3.2 peer
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(ad.Peer)) })
	// §3.2 roles with prices
	b.AddUint8(uint8(len(roles)))
	for _, r := range roles {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(r)) })
		b.AddUint64(ad.Prices[r])
	}
	b.AddUint64(ad.MinPrepaySat)
	b.AddBytes(ad.OnionKey[:])
	// §3.2 payee: 0 or 33 bytes (compressed secp256k1 key)
	payee, _ := hex.DecodeString(ad.Payee) // checked by checkAdvert
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(payee) })
	// §3.2 keysets
	b.AddUint8(uint8(len(ad.Keysets)))
	for _, k := range ad.Keysets {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.ID) })
		b.AddUint8(uint8(len(k.Denominations)))
		for _, d := range k.Denominations {
			b.AddUint64(d)
		}
		b.AddUint8(uint8(len(k.PublicKeys)))
		for _, pk := range k.PublicKeys {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(pk) })
		}
		b.AddUint64(uint64(k.NotBefore.Unix()))
		b.AddUint64(uint64(k.MintUntil.Unix()))
		b.AddUint64(uint64(k.NotAfter.Unix()))
	}
	// §3.2 exit ports
	b.AddUint8(uint8(len(ports)))
	for _, p := range ports {
		b.AddUint16(p.Lo)
		b.AddUint16(p.Hi)
	}
	// §3.2 family
	b.AddUint8(uint8(len(fam)))
	for _, f := range fam {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(f)) })
	}
	// §3.2 addresses
	b.AddUint8(uint8(len(ad.Addrs)))
	for _, a := range ad.Addrs {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a.Bytes()) })
	}
	b.AddUint32(ad.CapacityKBps)
	b.AddUint64(ad.Seq)
	b.AddUint64(uint64(ad.Expiry.Unix()))
	// §3.2 stake proof: present only when the node is staked, so unstaked
	// adverts encode as before.
	if !ad.Stake.IsZero() {
		b.AddUint64(uint64(ad.Stake.Expiry.Unix()))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(ad.Stake.Sig)) })
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode advert: %w: %v", ErrMalformed, err)
	}
	if len(out) > MaxEnvelopeSize {
		return nil, fmt.Errorf("encode advert: %w: body %d bytes", ErrTooLarge, len(out))
	}
	return out, nil
}

// checkAdvert validates the fields of ad against the caps and rules of §3.2.
func checkAdvert(ad *Advert) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	big := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrTooLarge}, args...)...)
	}
	if len(ad.Peer) == 0 || len(ad.Peer) > MaxPeerIDLen {
		return bad("peer id length %d", len(ad.Peer))
	}
	if err := ad.Peer.Validate(); err != nil {
		return bad("peer id: %v", err)
	}
	if len(ad.Roles) == 0 {
		return bad("no roles")
	}
	if len(ad.Roles) > MaxRoles {
		return big("%d roles", len(ad.Roles))
	}
	seen := make(map[Role]bool, len(ad.Roles))
	for _, r := range ad.Roles {
		if !validRole(r) {
			return bad("role name %q", r)
		}
		if seen[r] {
			return bad("duplicate role %q", r)
		}
		seen[r] = true
	}
	for r := range ad.Prices {
		if !seen[r] {
			return bad("price for role %q not offered", r)
		}
	}
	if len(ad.Keysets) > MaxKeysets {
		return big("%d keysets", len(ad.Keysets))
	}
	for i, k := range ad.Keysets {
		if len(k.ID) == 0 || len(k.ID) > MaxKeysetIDLen {
			return bad("keyset %d id length %d", i, len(k.ID))
		}
		if len(k.Denominations) > MaxDenominations {
			return big("keyset %d: %d denominations", i, len(k.Denominations))
		}
		if len(k.PublicKeys) > MaxKeysetKeys {
			return big("keyset %d: %d keys", i, len(k.PublicKeys))
		}
		for j, pk := range k.PublicKeys {
			if len(pk) == 0 || len(pk) > MaxMintKeySize {
				return big("keyset %d key %d: %d bytes", i, j, len(pk))
			}
		}
		if k.NotBefore.Unix() < 0 || k.MintUntil.Before(k.NotBefore) || k.NotAfter.Before(k.MintUntil) {
			return bad("keyset %d: validity window not ordered not-before <= mint-until <= not-after", i)
		}
	}
	if ad.Payee != "" {
		if b, err := hex.DecodeString(ad.Payee); err != nil || len(b) != PayeeLen || hex.EncodeToString(b) != ad.Payee {
			return bad("payee is not %d bytes of lowercase hex", PayeeLen)
		}
	}
	if len(ad.ExitPorts) > MaxPortRanges {
		return big("%d port ranges", len(ad.ExitPorts))
	}
	ports := slices.Clone(ad.ExitPorts)
	slices.SortFunc(ports, func(a, b PortRange) int { return cmp.Compare(a.Lo, b.Lo) })
	for i, p := range ports {
		if p.Lo > p.Hi {
			return bad("port range %d-%d", p.Lo, p.Hi)
		}
		if i > 0 && p.Lo <= ports[i-1].Hi {
			return bad("overlapping port ranges")
		}
	}
	if len(ad.Family) > MaxFamily {
		return big("%d family members", len(ad.Family))
	}
	fam := make(map[peer.ID]bool, len(ad.Family))
	for _, f := range ad.Family {
		if len(f) == 0 || len(f) > MaxPeerIDLen || f.Validate() != nil {
			return bad("family member id")
		}
		if f == ad.Peer || fam[f] {
			return bad("family member repeated or self")
		}
		fam[f] = true
	}
	if len(ad.Addrs) > MaxAddrs {
		return big("%d addresses", len(ad.Addrs))
	}
	for _, a := range ad.Addrs {
		if a == nil || len(a.Bytes()) == 0 {
			return bad("empty address")
		}
		if len(a.Bytes()) > MaxAddrLen {
			return big("address of %d bytes", len(a.Bytes()))
		}
	}
	if ad.Expiry.Unix() <= 0 {
		return bad("no expiry")
	}
	if !ad.Stake.IsZero() {
		if ad.Payee == "" {
			return bad("stake proof without a payee")
		}
		if !validStakeSig(ad.Stake.Sig) {
			return bad("stake signature is not 1..%d zbase32 characters", MaxStakeSigLen)
		}
		if ad.Stake.Expiry.Unix() <= 0 {
			return bad("stake proof without expiry")
		}
	} else if !ad.Stake.Expiry.IsZero() {
		return bad("stake expiry without signature")
	}
	return nil
}

// decodeBody parses a body encoded by encodeBody. It rejects truncated input,
// trailing bytes, non-canonical order and anything over a cap; it never panics.
func decodeBody(body []byte) (Advert, error) {
	var ad Advert
	if len(body) > MaxEnvelopeSize {
		return ad, fmt.Errorf("%w: body %d bytes", ErrTooLarge, len(body))
	}
	s := cryptobyte.String(body)
	fail := func(what string) (Advert, error) {
		return Advert{}, fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	var pid cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&pid) || len(pid) == 0 || len(pid) > MaxPeerIDLen {
		return fail("peer id")
	}
	id, err := peer.IDFromBytes(pid)
	if err != nil {
		return fail("peer id")
	}
	ad.Peer = id

	var n uint8
	if !s.ReadUint8(&n) || n == 0 || int(n) > MaxRoles {
		return fail("role count")
	}
	ad.Prices = make(map[Role]uint64, n)
	for i := 0; i < int(n); i++ {
		var name cryptobyte.String
		var price uint64
		if !s.ReadUint8LengthPrefixed(&name) || !s.ReadUint64(&price) {
			return fail("role")
		}
		r := Role(name)
		if !validRole(r) || (i > 0 && r <= ad.Roles[i-1]) {
			return fail("role name or order")
		}
		ad.Roles = append(ad.Roles, r)
		ad.Prices[r] = price
	}
	if !s.ReadUint64(&ad.MinPrepaySat) || !s.CopyBytes(ad.OnionKey[:]) {
		return fail("prepay or onion key")
	}
	var payee cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&payee) || (len(payee) != 0 && len(payee) != PayeeLen) {
		return fail("payee")
	}
	if len(payee) > 0 {
		ad.Payee = hex.EncodeToString(payee)
	}

	if !s.ReadUint8(&n) || int(n) > MaxKeysets {
		return fail("keyset count")
	}
	for i := 0; i < int(n); i++ {
		var k Keyset
		var kid cryptobyte.String
		if !s.ReadUint8LengthPrefixed(&kid) || len(kid) == 0 || len(kid) > MaxKeysetIDLen {
			return fail("keyset id")
		}
		k.ID = bytes.Clone(kid)
		var nd uint8
		if !s.ReadUint8(&nd) || int(nd) > MaxDenominations {
			return fail("denomination count")
		}
		for j := 0; j < int(nd); j++ {
			var d uint64
			if !s.ReadUint64(&d) {
				return fail("denomination")
			}
			k.Denominations = append(k.Denominations, d)
		}
		var nk uint8
		if !s.ReadUint8(&nk) || int(nk) > MaxKeysetKeys {
			return fail("keyset key count")
		}
		for j := 0; j < int(nk); j++ {
			var pk cryptobyte.String
			if !s.ReadUint16LengthPrefixed(&pk) || len(pk) == 0 || len(pk) > MaxMintKeySize {
				return fail("keyset key")
			}
			k.PublicKeys = append(k.PublicKeys, bytes.Clone(pk))
		}
		var nb, mu, na uint64
		// As int64 seconds, the order the encoder enforces: 0 <= nb <= mu <= na.
		if !s.ReadUint64(&nb) || !s.ReadUint64(&mu) || !s.ReadUint64(&na) ||
			int64(nb) < 0 || int64(nb) > int64(mu) || int64(mu) > int64(na) {
			return fail("keyset validity window")
		}
		k.NotBefore, k.MintUntil, k.NotAfter = unixTime(nb), unixTime(mu), unixTime(na)
		ad.Keysets = append(ad.Keysets, k)
	}

	if !s.ReadUint8(&n) || int(n) > MaxPortRanges {
		return fail("port range count")
	}
	for i := 0; i < int(n); i++ {
		var p PortRange
		if !s.ReadUint16(&p.Lo) || !s.ReadUint16(&p.Hi) || p.Lo > p.Hi {
			return fail("port range")
		}
		if i > 0 && p.Lo <= ad.ExitPorts[i-1].Hi {
			return fail("port range order")
		}
		ad.ExitPorts = append(ad.ExitPorts, p)
	}

	if !s.ReadUint8(&n) || int(n) > MaxFamily {
		return fail("family count")
	}
	for i := 0; i < int(n); i++ {
		var f cryptobyte.String
		if !s.ReadUint8LengthPrefixed(&f) || len(f) == 0 || len(f) > MaxPeerIDLen {
			return fail("family member")
		}
		fid, err := peer.IDFromBytes(f)
		if err != nil || fid == ad.Peer || (i > 0 && fid <= ad.Family[i-1]) {
			return fail("family member or order")
		}
		ad.Family = append(ad.Family, fid)
	}

	if !s.ReadUint8(&n) || int(n) > MaxAddrs {
		return fail("address count")
	}
	for i := 0; i < int(n); i++ {
		var a cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&a) || len(a) == 0 || len(a) > MaxAddrLen {
			return fail("address")
		}
		m, err := ma.NewMultiaddrBytes(a)
		if err != nil || !bytes.Equal(m.Bytes(), a) {
			return fail("address")
		}
		ad.Addrs = append(ad.Addrs, m)
	}
	var exp uint64
	if !s.ReadUint32(&ad.CapacityKBps) || !s.ReadUint64(&ad.Seq) || !s.ReadUint64(&exp) {
		return fail("capacity, seq or expiry")
	}
	if int64(exp) <= 0 {
		return fail("expiry")
	}
	ad.Expiry = unixTime(exp)
	if !s.Empty() {
		var sexp uint64
		var sig cryptobyte.String
		if !s.ReadUint64(&sexp) || int64(sexp) <= 0 || !s.ReadUint8LengthPrefixed(&sig) ||
			!validStakeSig(string(sig)) || ad.Payee == "" {
			return fail("stake proof")
		}
		ad.Stake = StakeProof{Expiry: unixTime(sexp), Sig: string(sig)}
	}
	if !s.Empty() {
		return fail("trailing bytes")
	}
	return ad, nil
}

func unixTime(v uint64) time.Time { return time.Unix(int64(v), 0).UTC() }

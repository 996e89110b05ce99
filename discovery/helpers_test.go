package discovery

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// testKey returns a deterministic Ed25519 key for seed.
func testKey(t testing.TB, seed string) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sum := sha256.Sum256([]byte(seed))
	priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, id
}

// testEpoch is the fixed "now" of codec and selection tests.
var testEpoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// sampleAdvert returns a full advert for id with every field set.
func sampleAdvert(t testing.TB, id peer.ID, fam ...peer.ID) Advert {
	t.Helper()
	return Advert{
		Peer:         id,
		Roles:        []Role{RoleRelay, RoleExit},
		Prices:       map[Role]uint64{RoleRelay: 10, RoleExit: 25},
		MinPrepaySat: 100,
		OnionKey:     [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32},
		Payee:        "02" + strings.Repeat("ab", 32),
		Keysets: []Keyset{{
			ID:            []byte("ks-2026-11"),
			Denominations: []uint64{1, 2, 4, 8},
			PublicKeys:    [][]byte{[]byte("pk-one"), []byte("pk-two")},
			NotBefore:     testEpoch,
			MintUntil:     testEpoch.Add(23 * 24 * time.Hour),
			NotAfter:      testEpoch.Add(30 * 24 * time.Hour),
		}},
		ExitPorts:    []PortRange{{80, 80}, {443, 443}, {8333, 8333}, {9735, 9735}},
		Family:       fam,
		Addrs:        []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001"), ma.StringCast("/ip6/::1/udp/4001/quic-v1")},
		CapacityKBps: 2048,
		Seq:          7,
		Expiry:       testEpoch.Add(6 * time.Hour),
	}
}

// synthAdvert makes a relay advert at IPv4 a.b.c.d with the given family.
func synthAdvert(t testing.TB, i int, ip string, roles []Role, fam []peer.ID) (Advert, crypto.PrivKey) {
	t.Helper()
	priv, id := testKey(t, fmt.Sprintf("synth-%d", i))
	prices := map[Role]uint64{}
	for _, r := range roles {
		prices[r] = uint64(5 + i%20)
	}
	return Advert{
		Peer:         id,
		Roles:        roles,
		Prices:       prices,
		ExitPorts:    []PortRange{{1, 65535}},
		Family:       fam,
		Addrs:        []ma.Multiaddr{ma.StringCast("/ip4/" + ip + "/tcp/4001")},
		CapacityKBps: uint32(1000 + 100*(i%10)),
		Seq:          1,
		Expiry:       testEpoch.Add(time.Hour),
	}, priv
}

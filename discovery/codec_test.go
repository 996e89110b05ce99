package discovery

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var update = flag.Bool("update", false, "rewrite testdata golden vectors")

func TestAdvertRoundTrip(t *testing.T) {
	t.Parallel()
	priv, id := testKey(t, "a")
	_, other := testKey(t, "b")
	tests := []struct {
		name string
		mod  func(*Advert)
	}{
		{"full", func(*Advert) {}},
		{"family", func(a *Advert) { a.Family = []peer.ID{other} }},
		{"minimal", func(a *Advert) {
			*a = Advert{Peer: id, Roles: []Role{RoleRelay}, Expiry: testEpoch.Add(time.Hour)}
		}},
		{"unsorted input is canonicalised", func(a *Advert) {
			a.Roles = []Role{RoleRelay, RoleExit, RoleMempool}
			a.ExitPorts = []PortRange{{9000, 9100}, {22, 25}}
		}},
		{"stake proof", func(a *Advert) {
			a.Stake = StakeProof{Expiry: testEpoch.Add(14 * 24 * time.Hour), Sig: strings.Repeat("d7y1", 26)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ad := sampleAdvert(t, id)
			tc.mod(&ad)
			env, err := SignAdvert(&ad, priv)
			if err != nil {
				t.Fatal(err)
			}
			got, err := OpenAdvert(env, testEpoch)
			if err != nil {
				t.Fatal(err)
			}
			env2, err := SignAdvert(&got, priv)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(env, env2) {
				t.Fatal("re-encoding a decoded advert changed its bytes")
			}
			if got.Stake.Sig != ad.Stake.Sig || !got.Stake.Expiry.Equal(ad.Stake.Expiry) {
				t.Fatalf("stake %+v, want %+v", got.Stake, ad.Stake)
			}
			if got.Peer != ad.Peer || got.Seq != ad.Seq || !got.Expiry.Equal(ad.Expiry) ||
				len(got.Roles) != len(ad.Roles) || got.OnionKey != ad.OnionKey || len(got.Addrs) != len(ad.Addrs) {
				t.Fatalf("decoded %+v, want %+v", got, ad)
			}
			for _, r := range ad.Roles {
				if got.Prices[r] != ad.Prices[r] {
					t.Fatalf("price of %s = %d, want %d", r, got.Prices[r], ad.Prices[r])
				}
			}
		})
	}
}

func TestOpenAdvertRejects(t *testing.T) {
	t.Parallel()
	priv, id := testKey(t, "a")
	otherPriv, other := testKey(t, "b")
	good := sampleAdvert(t, id)
	env, err := SignAdvert(&good, priv)
	if err != nil {
		t.Fatal(err)
	}
	// An advert naming peer a, signed by b and carrying b's key.
	forged := func() []byte {
		ad := sampleAdvert(t, other)
		e, err := SignAdvert(&ad, otherPriv)
		if err != nil {
			t.Fatal(err)
		}
		// Swap the body's peer id for a's (same length: both Ed25519).
		return bytes.Replace(e, []byte(other), []byte(id), 1)
	}
	flip := func(i int) []byte {
		e := bytes.Clone(env)
		e[i] ^= 1
		return e
	}
	tests := []struct {
		name string
		env  []byte
		now  time.Time
		want error
	}{
		{"tampered body", flip(len(env) - 80), testEpoch, ErrBadSignature},
		{"tampered signature", flip(len(env) - 1), testEpoch, ErrBadSignature},
		{"claims someone else's key", forged(), testEpoch, ErrKeyMismatch},
		{"expired", env, good.Expiry, ErrExpired},
		{"expiry too far ahead", env, good.Expiry.Add(-MaxAdvertLifetime - time.Second), ErrTooFarAhead},
		{"truncated", env[:len(env)-1], testEpoch, ErrMalformed},
		{"trailing byte", append(bytes.Clone(env), 0), testEpoch, ErrMalformed},
		{"bad version", append([]byte{2}, env[1:]...), testEpoch, ErrMalformed},
		{"oversized", make([]byte, MaxEnvelopeSize+1), testEpoch, ErrTooLarge},
		{"empty", nil, testEpoch, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := OpenAdvert(tc.env, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignAdvertRefuses(t *testing.T) {
	t.Parallel()
	priv, id := testKey(t, "a")
	_, other := testKey(t, "b")
	tests := []struct {
		name string
		mod  func(*Advert)
		want error
	}{
		{"wrong key", func(a *Advert) { a.Peer = other }, ErrKeyMismatch},
		{"no roles", func(a *Advert) { a.Roles = nil; a.Prices = nil }, ErrMalformed},
		{"bad role name", func(a *Advert) { a.Roles = []Role{"Relay"}; a.Prices = nil }, ErrMalformed},
		{"duplicate role", func(a *Advert) { a.Roles = []Role{RoleRelay, RoleRelay}; a.Prices = nil }, ErrMalformed},
		{"price without role", func(a *Advert) { a.Prices[RoleMempool] = 1 }, ErrMalformed},
		{"overlapping ports", func(a *Advert) { a.ExitPorts = []PortRange{{1, 10}, {10, 20}} }, ErrMalformed},
		{"inverted ports", func(a *Advert) { a.ExitPorts = []PortRange{{10, 1}} }, ErrMalformed},
		{"self in family", func(a *Advert) { a.Family = []peer.ID{id} }, ErrMalformed},
		{"no expiry", func(a *Advert) { a.Expiry = time.Time{} }, ErrMalformed},
		{"too many addrs", func(a *Advert) {
			for len(a.Addrs) <= MaxAddrs {
				a.Addrs = append(a.Addrs, ma.StringCast("/ip4/127.0.0.1/tcp/1"))
			}
		}, ErrTooLarge},
		{"huge mint key", func(a *Advert) { a.Keysets[0].PublicKeys = [][]byte{make([]byte, MaxMintKeySize+1)} }, ErrTooLarge},
		{"too many keysets", func(a *Advert) {
			for len(a.Keysets) <= MaxKeysets {
				a.Keysets = append(a.Keysets, a.Keysets[0])
			}
		}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ad := sampleAdvert(t, id)
			tc.mod(&ad)
			if _, err := SignAdvert(&ad, priv); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// vector is one golden advert in testdata/adverts.json.
type vector struct {
	Name  string `json:"name"`
	Env   string `json:"envelope_hex"`
	Now   int64  `json:"now_unix"`
	Error string `json:"error,omitempty"` // sentinel text; empty: must open
	Peer  string `json:"peer,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
}

func sentinel(name string) error {
	for _, e := range []error{ErrMalformed, ErrTooLarge, ErrBadSignature, ErrKeyMismatch, ErrExpired, ErrTooFarAhead} {
		if e.Error() == name {
			return e
		}
	}
	return nil
}

func goldenVectors(t *testing.T) []vector {
	priv, id := testKey(t, "golden")
	ad := sampleAdvert(t, id)
	env, err := SignAdvert(&ad, priv)
	if err != nil {
		t.Fatal(err)
	}
	min := Advert{Peer: id, Roles: []Role{RoleMempool}, Prices: map[Role]uint64{RoleMempool: 3}, Seq: 1, Expiry: testEpoch.Add(time.Hour)}
	envMin, err := SignAdvert(&min, priv)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(env)
	tampered[len(tampered)-100] ^= 0x80
	now := testEpoch.Unix()
	return []vector{
		{Name: "full advert", Env: hex.EncodeToString(env), Now: now, Peer: id.String(), Seq: ad.Seq},
		{Name: "minimal mempool advert", Env: hex.EncodeToString(envMin), Now: now, Peer: id.String(), Seq: 1},
		{Name: "tampered", Env: hex.EncodeToString(tampered), Now: now, Error: ErrBadSignature.Error()},
		{Name: "expired", Env: hex.EncodeToString(env), Now: ad.Expiry.Unix(), Error: ErrExpired.Error()},
		{Name: "truncated", Env: hex.EncodeToString(env[:40]), Now: now, Error: ErrMalformed.Error()},
	}
}

func TestGoldenVectors(t *testing.T) {
	path := filepath.Join("testdata", "adverts.json")
	if *update {
		b, err := json.MarshalIndent(goldenVectors(t), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vs, goldenVectors(t)) {
		t.Fatal("encoder output differs from testdata/adverts.json (run with -update after a deliberate format change)")
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			env, err := hex.DecodeString(v.Env)
			if err != nil {
				t.Fatal(err)
			}
			ad, err := OpenAdvert(env, time.Unix(v.Now, 0))
			if v.Error != "" {
				if want := sentinel(v.Error); want == nil || !errors.Is(err, want) {
					t.Fatalf("err = %v, want %s", err, v.Error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ad.Peer.String() != v.Peer || ad.Seq != v.Seq {
				t.Fatalf("peer %s seq %d, want %s %d", ad.Peer, ad.Seq, v.Peer, v.Seq)
			}
		})
	}
}

func seedFromTestdata(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "adverts.json"))
	if err != nil {
		f.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		f.Fatal(err)
	}
	for _, v := range vs {
		env, err := hex.DecodeString(v.Env)
		if err == nil {
			f.Add(env)
		}
	}
}

// FuzzOpenAdvert: arbitrary envelopes never panic; one that opens re-encodes
// (body) to the same bytes.
func FuzzOpenAdvert(f *testing.F) {
	seedFromTestdata(f)
	f.Fuzz(func(t *testing.T, env []byte) {
		ad, err := openUnchecked(env)
		if err != nil {
			return
		}
		body, err := encodeBody(&ad)
		if err != nil {
			t.Fatalf("decoded advert does not encode: %v", err)
		}
		if !bytes.Contains(env, body) {
			t.Fatal("re-encoded body differs from the signed one")
		}
	})
}

// FuzzDecodeBody: arbitrary bodies never panic; decode → encode → same bytes.
func FuzzDecodeBody(f *testing.F) {
	seedFromTestdata(f)
	_, id := testKey(f, "fuzz-stake")
	staked := sampleAdvert(f, id)
	staked.Stake = StakeProof{Expiry: testEpoch.Add(time.Hour), Sig: strings.Repeat("ybnd", 26)}
	if b, err := encodeBody(&staked); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, in := range [][]byte{body, bodyOf(body)} {
			ad, err := decodeBody(in)
			if err != nil {
				continue
			}
			out, err := encodeBody(&ad)
			if err != nil {
				t.Fatalf("decoded body does not encode: %v", err)
			}
			if !bytes.Equal(in, out) {
				t.Fatalf("round trip changed bytes:\n in %x\nout %x", in, out)
			}
		}
	})
}

// bodyOf extracts the body of an envelope, or nil.
func bodyOf(env []byte) []byte {
	if len(env) < 3 {
		return nil
	}
	pk := int(env[1])<<8 | int(env[2])
	off := 3 + pk
	if len(env) < off+2 {
		return nil
	}
	n := int(env[off])<<8 | int(env[off+1])
	if len(env) < off+2+n {
		return nil
	}
	return env[off+2 : off+2+n]
}

func TestPayeeAndKeysetWindowChecked(t *testing.T) {
	t.Parallel()
	priv, id := testKey(t, "payee-window")
	cases := []struct {
		name string
		mut  func(*Advert)
	}{
		{"payee not hex", func(a *Advert) { a.Payee = "zz" + a.Payee[2:] }},
		{"payee short", func(a *Advert) { a.Payee = a.Payee[:64] }},
		{"payee upper case", func(a *Advert) { a.Payee = strings.ToUpper(a.Payee) }},
		{"mint window after redeem window", func(a *Advert) { a.Keysets[0].MintUntil = a.Keysets[0].NotAfter.Add(time.Second) }},
		{"not-before after mint-until", func(a *Advert) { a.Keysets[0].NotBefore = a.Keysets[0].MintUntil.Add(time.Second) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ad := sampleAdvert(t, id)
			tc.mut(&ad)
			if _, err := SignAdvert(&ad, priv); !errors.Is(err, ErrMalformed) {
				t.Fatalf("SignAdvert = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestKeysetWindowNegativeRejected: a body whose keyset window is ordered
// as unsigned numbers but not as the signed seconds the encoder uses must
// not decode (it would decode to an advert that cannot be re-encoded).
func TestKeysetWindowNegativeRejected(t *testing.T) {
	t.Parallel()
	_, id := testKey(t, "window")
	ad := sampleAdvert(t, id)
	body, err := encodeBody(&ad)
	if err != nil {
		t.Fatal(err)
	}
	var na [8]byte
	binary.BigEndian.PutUint64(na[:], uint64(ad.Keysets[0].NotAfter.Unix()))
	i := bytes.Index(body, na[:])
	if i < 0 {
		t.Fatal("not-after not found in body")
	}
	bad := bytes.Clone(body)
	binary.BigEndian.PutUint64(bad[i:], 1<<63) // negative as int64
	if _, err := decodeBody(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decode = %v, want ErrMalformed", err)
	}
}

// TestStakeProofEncodingRefused: a stake proof needs a payee, an expiry and
// a zbase32 signature of at most MaxStakeSigLen characters.
func TestStakeProofEncodingRefused(t *testing.T) {
	t.Parallel()
	priv, id := testKey(t, "stake")
	sig := strings.Repeat("y", 104)
	tests := []struct {
		name string
		mod  func(*Advert)
	}{
		{"no payee", func(a *Advert) { a.Payee = ""; a.Stake = StakeProof{Expiry: testEpoch, Sig: sig} }},
		{"not zbase32", func(a *Advert) { a.Stake = StakeProof{Expiry: testEpoch, Sig: "l0v" + sig} }},
		{"too long", func(a *Advert) { a.Stake = StakeProof{Expiry: testEpoch, Sig: strings.Repeat("y", MaxStakeSigLen+1)} }},
		{"no expiry", func(a *Advert) { a.Stake = StakeProof{Sig: sig} }},
		{"expiry without signature", func(a *Advert) { a.Stake = StakeProof{Expiry: testEpoch} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ad := sampleAdvert(t, id)
			tc.mod(&ad)
			if _, err := SignAdvert(&ad, priv); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	// Message binding: another peer or another payee gives another message.
	_, other := testKey(t, "other")
	m := StakeMessage(id, "02aa", testEpoch)
	if string(m) == string(StakeMessage(other, "02aa", testEpoch)) || string(m) == string(StakeMessage(id, "03aa", testEpoch)) {
		t.Fatal("stake message does not bind peer and payee")
	}
}

// TestStakeWeight: capacity counts by channel age, is capped, and never
// falls below UnstakedWeight.
func TestStakeWeight(t *testing.T) {
	t.Parallel()
	c, e := effectiveStake([]StakeChannel{{CapacitySat: 1_000_000, FundingHeight: 1000}, {CapacitySat: 2_000_000, FundingHeight: 1000 + StakeFullAgeBlocks/2}, {CapacitySat: -5}}, 1000+StakeFullAgeBlocks)
	if c != 3_000_000 || e != 2_000_000 {
		t.Fatalf("capacity %d effective %d, want 3000000 and 2000000", c, e)
	}
	if w := stakeWeight(0); w != UnstakedWeight {
		t.Fatalf("unstaked weight %v", w)
	}
	if stakeWeight(10*StakeCapSat) != 1 || stakeWeight(StakeCapSat/2) != 0.5 {
		t.Fatal("cap or linearity wrong")
	}
}

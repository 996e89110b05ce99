package proxy

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// testOnion derives the v3 onion host of a fixed-seed ed25519 key.
func testOnion(seed byte) string {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return onionaddr.Encode(ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
}

func TestValidOnionV3(t *testing.T) {
	t.Parallel()
	good := testOnion(1)
	cases := []struct {
		host string
		want bool
	}{
		{"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", true},
		{"2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion", true},
		{"www.2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion", true},
		{strings.ToUpper(good[:56]) + ".ONION", true},
		{good, true},
		{"2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wie.onion", false}, // checksum
		{"expyuzz4wqqyqhjn.onion", false},                                         // retired v2
		{"abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion", false},
		{"2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wi1.onion", false}, // not base32
		{"", false},
		{".onion", false},
		{"onion", false},
		{good[:56] + ".example", false},
	}
	for _, tc := range cases {
		if got := validOnionV3(tc.host); got != tc.want {
			t.Errorf("validOnionV3(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestSOCKSOnionReplyCodes: .onion targets get Tor's extended codes.
func TestSOCKSOnionReplyCodes(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	nodesc, slow, refused, ok := testOnion(2), testOnion(3), testOnion(4), testOnion(5)
	f.setErr(nodesc, fmt.Errorf("x: %w", circuit.ErrResolveFailed))
	f.setErr(slow, fmt.Errorf("x: %w", circuit.ErrTimeout))
	f.setErr(refused, fmt.Errorf("x: %w", circuit.ErrConnRefused))
	local := testOnion(6)
	f.setErr(local, fmt.Errorf("dial: %w", ErrOnionNotFound))
	addr := startSOCKS(t, f, nil)
	cases := []struct {
		name, host string
		rep        byte
	}{
		{"ok", ok, 0x00},
		{"descriptor not found", nodesc, 0xF0},
		{"answered by the client itself", local, 0xF0},
		{"intro timed out", slow, 0xF7},
		{"refused keeps standard code", refused, 0x05},
		{"bad checksum", ok[:55] + "a.onion", 0xF6},
		{"v2", "expyuzz4wqqyqhjn.onion", 0xF6},
		{"upper case is fine", strings.ToUpper(ok), 0x00},
		// The target grammar comes first, as the character check did.
		{"bad character", "exp yuzz4wqqyqhjn.onion", 0x01},
		{"empty label", "www.." + ok, 0x01},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.send(5, 1, 0)
			c.expect(5, 0)
			c.send(socksDomain(1, tc.host, 8333)...)
			c.expect(5, tc.rep, 0, 1, 0, 0, 0, 0, 0, 0)
		})
	}
	for _, call := range f.got() {
		if strings.HasPrefix(call.target, "expyuzz4") || strings.HasPrefix(call.target, ok[:55]+"a") {
			t.Fatalf("invalid onion %q reached Dial", call.target)
		}
	}
}

// TestSOCKSReplyErrorExact: a Dial error carrying a *ReplyError (a Tor
// gateway relaying tor's reply) reaches the client byte-exact, for .onion
// and other targets alike, over the onion sentinels it may also wrap; a
// code that is no SOCKS5 failure code becomes general failure.
func TestSOCKSReplyErrorExact(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	type tc struct {
		host string
		code byte
		want byte
	}
	var cases []tc
	for i, code := range []byte{0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0x09, 0xF8} {
		want := code
		if code == 0x09 || code == 0xF8 {
			want = 0x01
		}
		h := testOnion(byte(20 + i))
		// Wrapped together with a sentinel that alone would pick 0xF0.
		f.setErr(h, fmt.Errorf("gateway: %w", &ReplyError{Code: code, Err: ErrOnionNotFound}))
		cases = append(cases, tc{h, code, want})
	}
	f.setErr("example.com", &ReplyError{Code: 0xF3})
	cases = append(cases, tc{"example.com", 0xF3, 0xF3})
	addr := startSOCKS(t, f, nil)
	for _, c := range cases {
		t.Run(fmt.Sprintf("%02x", c.code), func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, addr)
			r.send(5, 1, 0)
			r.expect(5, 0)
			r.send(socksDomain(1, c.host, 80)...)
			r.expect(5, c.want, 0, 1, 0, 0, 0, 0, 0, 0)
		})
	}
}

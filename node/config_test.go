package node

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

func TestRenderConfigRoundTrip(t *testing.T) {
	t.Parallel()
	c := DefaultConfig(t.TempDir())
	c.Roles = []Role{RoleClient, RoleRelay, RoleExit}
	c.HTTP.Enabled = true
	c.Exit.Policy = []string{"accept 127.0.0.0/8:*"}
	c.Payments.Enabled = true
	c.LND.TLSCertPath = "/home/u/.lnd/tls.cert"
	c.LND.MacaroonPath = "/home/u/.lnd/admin.macaroon"
	c.Discovery.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}
	raw, err := RenderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(c.DataDir, raw)
	if err != nil {
		t.Fatalf("parse rendered config: %v\n%s", err, raw)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, c)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml, field string
	}{
		{"unknown role", "roles: [client, wizard]", "roles[1]"},
		{"dup role", "roles: [relay, relay]", "roles[1]"},
		{"bad listen", "network:\n  listen: [\"not a multiaddr\"]", "network.listen[0]"},
		{"bad socks", "socks:\n  listen: \"nowhere\"", "socks.listen"},
		{"hops", "circuit:\n  hops: 9", "circuit.hops"},
		{"mode", "discovery:\n  mode: carrier-pigeon", "discovery.mode"},
		{"bootstrap without p2p", "discovery:\n  bootstrap: [\"/ip4/127.0.0.1/tcp/1\"]", "discovery.bootstrap[0]"},
		{"socks without client", "roles: [relay]\nsocks:\n  enabled: true", "roles"},
		{"level", "log:\n  level: loud", "log.level"},
		{"exit policy", "exit:\n  policy: [\"allow everything\"]", "exit.policy"},
		{"unknown key", "sock:\n  listen: 1", "config.yaml"},
		{"payments without lnd", "payments:\n  enabled: true", "lnd.tlscertpath"},
		{"negative timeout", "circuit:\n  build_timeout: -1s", "circuit.build_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig(t.TempDir(), []byte(tc.yaml))
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestEmptyConfigIsDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got, err := ParseConfig(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig(dir)
	// But for discovery: a file without discovery.mode stays private
	// (DISCOVERY.md §1); DefaultConfig, which init renders, is ipfs.
	want.Discovery.Mode, want.Discovery.Bootstrap = "private", nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v want %+v", got, want)
	}
	if !got.SOCKSEnabled() || got.SOCKS.Listen != "127.0.0.1:9050" {
		t.Fatalf("default SOCKS = %v %q", got.SOCKSEnabled(), got.SOCKS.Listen)
	}
}

func TestPublicOnlyGater(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"/ip4/127.0.0.1/tcp/4001", false},
		{"/ip4/10.1.2.3/tcp/4001", false},
		{"/ip4/192.168.0.1/udp/4001/quic-v1", false},
		{"/ip4/169.254.1.1/tcp/1", false},
		{"/ip6/::1/tcp/4001", false},
		{"/ip6/fe80::1/tcp/4001", false},
		{"/ip4/1.1.1.1/tcp/4001", true},
		{"/ip6/2001:4860::8888/tcp/4001", true},
	} {
		if got := (publicOnly{}).InterceptAddrDial("", ma.StringCast(tc.addr)); got != tc.ok {
			t.Errorf("dial %s allowed = %v, want %v", tc.addr, got, tc.ok)
		}
	}
}

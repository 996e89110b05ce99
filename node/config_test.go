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
	c.Exit.AllowPrivateRanges = []string{"loopback", "10.8.0.0/16"}
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
		{"exit accepts a shut private range", "exit:\n  policy: [\"accept 10.0.0.0/8:8333\"]", "exit.policy"},
		{"exit opens a public range", "exit:\n  allow_private_ranges: [\"8.8.8.0/24\"]", "exit.allow_private_ranges"},
		{"exit opens everything", "exit:\n  allow_private_ranges: [\"0.0.0.0/0\"]", "exit.allow_private_ranges"},
		{"old allow_loopback", "exit:\n  allow_loopback: true", "exit.allow_private_ranges"},
		{"unknown key", "sock:\n  listen: 1", "config.yaml"},
		{"payments without lnd", "payments:\n  enabled: true", "lnd.tlscertpath"},
		{"negative timeout", "circuit:\n  build_timeout: -1s", "circuit.build_timeout"},
		{"negative limit", "limits:\n  max_circuits: -1", "limits.max_circuits"},
		{"negative limit timeout", "limits:\n  write_timeout: -1s", "limits.write_timeout"},
		{"tiny memory budget", "limits:\n  memory_budget_mb: 8", "limits.memory_budget_mb"},
		{"circuit queue below a window", "limits:\n  max_circuit_queue: 2048", "limits.max_circuit_queue"},
		{"keep-alive after idle", "limits:\n  keep_alive: 10m\n  idle_timeout: 5m", "limits.keep_alive"},
		{"unknown limit", "limits:\n  max_everything: 1", "config.yaml"},
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
		// The exit's classification (internal/netclass): wrapped forms of
		// private addresses are refused, their public forms are not.
		{"/ip6/64:ff9b::a00:1/tcp/4001", false},          // NAT64 of 10.0.0.1
		{"/ip6/64:ff9b::7f00:1/udp/4001/quic-v1", false}, // NAT64 of 127.0.0.1
		{"/ip6/64:ff9b::101:101/tcp/4001", true},         // NAT64 of 1.1.1.1
		{"/ip6/64:ff9b:1::a00:1/tcp/4001", false},        // local-use NAT64
		{"/ip6/2002:c0a8:101::1/tcp/4001", false},        // 6to4 of 192.168.1.1
		{"/ip6/2002:a9fe:a9fe::1/tcp/4001", false},       // 6to4 of 169.254.169.254
		{"/ip6/2002:101:101::1/tcp/4001", true},          // 6to4 of 1.1.1.1
		{"/ip6/::ffff:10.0.0.1/tcp/4001", false},         // IPv4-mapped
		{"/ip6/::ffff:1.1.1.1/tcp/4001", true},
		{"/ip4/100.64.0.1/tcp/4001", false},
		{"/ip4/0.0.0.0/tcp/4001", false},
		{"/ip6/fd00::1/tcp/4001", false},
		{"/ip6/fec0::1/tcp/4001", false},
		{"/ip6/2001:db8::1/tcp/4001", false},
		{"/ip6zone/eth0/ip6/fe80::1/tcp/4001", false},
		{"/dns4/localhost/tcp/4001", false},
		{"/dns4/example.com/tcp/4001", true},
	} {
		if got := (publicOnly{}).InterceptAddrDial("", ma.StringCast(tc.addr)); got != tc.ok {
			t.Errorf("dial %s allowed = %v, want %v", tc.addr, got, tc.ok)
		}
	}
}

// TestExitOldAllowLoopback: configs written before exit.allow_private_ranges
// say allow_loopback: false, which still parses and opens nothing; true
// fails naming the new field; neither is written back.
func TestExitOldAllowLoopback(t *testing.T) {
	t.Parallel()
	c, err := ParseConfig(t.TempDir(), []byte("roles: [exit]\nexit:\n  allow_loopback: false\n"))
	if err != nil {
		t.Fatalf("allow_loopback: false: %v", err)
	}
	p, err := c.ExitPolicy()
	if err != nil || len(p.OpenPrivate()) != 0 {
		t.Fatalf("allow_loopback: false: policy %v opens %v", err, p.OpenPrivate())
	}
	raw, err := RenderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "allow_loopback") || !strings.Contains(string(raw), "allow_private_ranges: []") {
		t.Fatalf("rendered exit section:\n%s", raw)
	}
	_, err = ParseConfig(t.TempDir(), []byte("roles: [exit]\nexit:\n  allow_loopback: true\n"))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "exit.allow_loopback") || !strings.Contains(err.Error(), "allow_private_ranges: [loopback]") {
		t.Fatalf("allow_loopback: true: %v; want an error naming the new field", err)
	}
	c, err = ParseConfig(t.TempDir(), []byte("roles: [exit]\nexit:\n  allow_private_ranges: [loopback]\n  policy: [\"accept 127.0.0.1:8080\", \"reject *:*\"]\n"))
	if err != nil {
		t.Fatalf("allow_private_ranges: [loopback]: %v", err)
	}
	if p, err := c.ExitPolicy(); err != nil || len(p.OpenPrivate()) != 2 {
		t.Fatalf("allow_private_ranges: [loopback]: %v, opens %v", err, p)
	}
}

func TestConfigRefusesHugePrices(t *testing.T) {
	t.Parallel()
	for _, yml := range []string{
		"discovery:\n  price_sat_per_mb:\n    relay: 1000001\n",
		"discovery:\n  max_price_sat_per_mb: 18446744073709551615\n",
	} {
		_, err := ParseConfig(t.TempDir(), []byte(yml))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "price_sat_per_mb") {
			t.Errorf("%q: err = %v, want a config error naming the price field", yml, err)
		}
	}
}

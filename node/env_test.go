package node

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/co-infuse/co-infuse/discovery"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvVarsNamedAfterYAML(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, e := range EnvVars() {
		if seen[e.Name] {
			t.Errorf("%s listed twice", e.Name)
		}
		seen[e.Name] = true
		if !strings.HasPrefix(e.Name, EnvPrefix) {
			t.Errorf("%s lacks %s", e.Name, EnvPrefix)
		}
		if e.Field == "" {
			continue
		}
		want := EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(e.Field))
		if e.Name != want {
			t.Errorf("field %s: variable %s, want %s", e.Field, e.Name, want)
		}
		// Every field named exists in the rendered config template.
		raw, err := RenderConfig(DefaultConfig(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		last := e.Field[strings.LastIndex(e.Field, ".")+1:]
		if !strings.Contains(string(raw), last+":") {
			t.Errorf("field %s (%s) is not in config.yaml's template", e.Field, e.Name)
		}
	}
}

func TestLoadConfigEnvOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := LoadConfigEnv(dir, envMap(map[string]string{
		"CO_INFUSE_ROLES":                       "relay, exit",
		"CO_INFUSE_NETWORK_LISTEN":              "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1",
		"CO_INFUSE_NETWORK_ANNOUNCE":            "/ip4/10.201.0.11/tcp/4001",
		"CO_INFUSE_NETWORK_ALLOW_PRIVATE_PEERS": "true",
		"CO_INFUSE_DISCOVERY_MODE":              "private",
		"CO_INFUSE_EXIT_POLICY":                 "accept *:80; reject *:*",
		"CO_INFUSE_EXIT_ALLOW_PRIVATE_RANGES":   "10.201.0.0/16,10.202.0.0/16",
		"CO_INFUSE_DISCOVERY_PRICE_SAT_PER_MB":  "relay=3,exit=4",
		"CO_INFUSE_LOG_LEVEL":                   "debug",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Roles, []Role{RoleRelay, RoleExit}) || c.SOCKSEnabled() {
		t.Errorf("roles %v socks %v", c.Roles, c.SOCKSEnabled())
	}
	if len(c.Network.Listen) != 2 || c.Network.Announce[0] != "/ip4/10.201.0.11/tcp/4001" || !c.Network.AllowPrivatePeers {
		t.Errorf("network %+v", c.Network)
	}
	if c.Discovery.Mode != discovery.ModePrivate || c.Discovery.Bootstrap != nil {
		t.Errorf("discovery mode %q bootstrap %v", c.Discovery.Mode, c.Discovery.Bootstrap)
	}
	if !slices.Equal(c.Exit.Policy, []string{"accept *:80", "reject *:*"}) || len(c.Exit.AllowPrivateRanges) != 2 {
		t.Errorf("exit %+v", c.Exit)
	}
	if c.Discovery.PriceSatPerMB[RoleExit] != 4 || c.Log.Level != "debug" {
		t.Errorf("prices %v level %s", c.Discovery.PriceSatPerMB, c.Log.Level)
	}
}

func TestLoadConfigEnvOverridesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mounted := filepath.Join(t.TempDir(), "mounted.yaml")
	if err := os.WriteFile(mounted, []byte("roles: [client]\nsocks:\n  listen: 127.0.0.1:9150\nlog:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigEnv(dir, envMap(map[string]string{
		EnvConfig:                mounted,
		"CO_INFUSE_SOCKS_LISTEN": "0.0.0.0:9050",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SOCKS.Listen != "0.0.0.0:9050" || c.Log.Level != "warn" || c.DataDir != dir {
		t.Errorf("socks %s level %s datadir %s", c.SOCKS.Listen, c.Log.Level, c.DataDir)
	}
	// A file without a mode key stays private, as in LoadConfig.
	if c.Discovery.Mode != discovery.ModePrivate {
		t.Errorf("mode %s", c.Discovery.Mode)
	}
}

// TestLoadConfigEnvErrorsName checks that every bad input is an ErrConfig on
// one line naming the variable, field or file.
func TestLoadConfigEnvErrorsName(t *testing.T) {
	t.Parallel()
	badYAML := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(badYAML, []byte("roles: [client\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope", "tls.cert")
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"bool", map[string]string{"CO_INFUSE_NETWORK_ALLOW_PRIVATE_PEERS": "yes please"}, []string{"CO_INFUSE_NETWORK_ALLOW_PRIVATE_PEERS", "network.allow_private_peers"}},
		{"int", map[string]string{"CO_INFUSE_CIRCUIT_HOPS": "three"}, []string{"CO_INFUSE_CIRCUIT_HOPS"}},
		{"validate", map[string]string{"CO_INFUSE_CIRCUIT_HOPS": "12"}, []string{"circuit.hops", "CO_INFUSE_CIRCUIT_HOPS"}},
		{"listen", map[string]string{"CO_INFUSE_SOCKS_LISTEN": "nowhere"}, []string{"socks.listen", "CO_INFUSE_SOCKS_LISTEN"}},
		{"role", map[string]string{"CO_INFUSE_ROLES": "client,banker"}, []string{"roles[1]", "CO_INFUSE_ROLES"}},
		{"prices", map[string]string{"CO_INFUSE_DISCOVERY_PRICE_SAT_PER_MB": "relay"}, []string{"CO_INFUSE_DISCOVERY_PRICE_SAT_PER_MB"}},
		{"yaml", map[string]string{EnvConfig: badYAML}, []string{badYAML}},
		{"config missing", map[string]string{EnvConfig: missing}, []string{EnvConfig, missing}},
		{"macaroon", map[string]string{
			"CO_INFUSE_PAYMENTS_ENABLED":    "true",
			"CO_INFUSE_LND_TLSCERTPATH":     badYAML,
			"CO_INFUSE_LND_MACAROONPATH":    missing,
			"CO_INFUSE_DISCOVERY_MODE":      "private",
			"CO_INFUSE_DISCOVERY_BOOTSTRAP": "",
		}, []string{"lnd.macaroonpath", "CO_INFUSE_LND_MACAROONPATH", missing}},
		{"lnd host", map[string]string{
			"CO_INFUSE_PAYMENTS_ENABLED": "true",
			"CO_INFUSE_LND_HOST":         "lnd",
			"CO_INFUSE_LND_TLSCERTPATH":  badYAML,
			"CO_INFUSE_LND_MACAROONPATH": badYAML,
		}, []string{"lnd.host", "CO_INFUSE_LND_HOST"}},
		{"identity", map[string]string{"CO_INFUSE_ROLES": "relay", EnvIdentityKey: "!!"}, []string{EnvIdentityKey}},
		{"wait", map[string]string{"CO_INFUSE_LND_WAIT_FOR_CREDENTIALS": "soon"}, []string{"CO_INFUSE_LND_WAIT_FOR_CREDENTIALS", "lnd.wait_for_credentials"}},
		{"negative wait", map[string]string{
			"CO_INFUSE_PAYMENTS_ENABLED":         "true",
			"CO_INFUSE_LND_TLSCERTPATH":          missing,
			"CO_INFUSE_LND_MACAROONPATH":         missing,
			"CO_INFUSE_LND_WAIT_FOR_CREDENTIALS": "-1s",
		}, []string{"lnd.wait_for_credentials", "CO_INFUSE_LND_WAIT_FOR_CREDENTIALS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadConfigEnv(t.TempDir(), envMap(tc.env))
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v, want ErrConfig", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not name %q", msg, w)
				}
			}
		})
	}
}

// TestLoadConfigEnvWaitForCredentials: with lnd.wait_for_credentials set,
// missing LND files are left to the node's wait, not a config error.
func TestLoadConfigEnvWaitForCredentials(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "lnd", "admin.macaroon")
	c, err := LoadConfigEnv(t.TempDir(), envMap(map[string]string{
		"CO_INFUSE_PAYMENTS_ENABLED":         "true",
		"CO_INFUSE_LND_TLSCERTPATH":          missing,
		"CO_INFUSE_LND_MACAROONPATH":         missing,
		"CO_INFUSE_LND_WAIT_FOR_CREDENTIALS": "10m",
		"CO_INFUSE_DISCOVERY_MODE":           "private",
		"CO_INFUSE_DISCOVERY_BOOTSTRAP":      "",
	}))
	if err != nil || c.LND.WaitForCredentials != 10*time.Minute {
		t.Fatalf("LoadConfigEnv = %+v, %v; want wait 10m and no error", c.LND, err)
	}
}

func TestLoadConfigNoFileNoEnv(t *testing.T) {
	t.Parallel()
	_, err := LoadConfigEnv(t.TempDir(), envMap(nil))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "co-infuse init") {
		t.Fatalf("err %v", err)
	}
}

func TestEnvIdentityKey(t *testing.T) {
	t.Parallel()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := envMap(map[string]string{"CO_INFUSE_ROLES": "relay", EnvIdentityKey: base64.StdEncoding.EncodeToString(raw)})
	for range 2 { // the second start finds the same key written
		if _, err := LoadConfigEnv(dir, env); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equals(k) {
		t.Fatal("identity.key is not the key from the environment")
	}
	other, _, _ := crypto.GenerateEd25519Key(nil)
	raw2, _ := crypto.MarshalPrivateKey(other)
	_, err = LoadConfigEnv(dir, envMap(map[string]string{"CO_INFUSE_ROLES": "relay", EnvIdentityKey: base64.StdEncoding.EncodeToString(raw2)}))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "different key") {
		t.Fatalf("a different key: err %v", err)
	}
}

func FuzzApplyEnv(f *testing.F) {
	f.Add("CO_INFUSE_DISCOVERY_PRICE_SAT_PER_MB", "relay=1,exit=2")
	f.Add("CO_INFUSE_CIRCUIT_PREDICTED_PORTS", "8333,9735")
	f.Add("CO_INFUSE_EXIT_POLICY", "accept *:443;reject *:*")
	f.Fuzz(func(t *testing.T, name, value string) {
		c := Config{DataDir: "/nonexistent"}
		if _, err := c.ApplyEnv(envMap(map[string]string{name: value})); err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v is not ErrConfig", err)
			}
			return
		}
		c.ApplyDefaults()
		_ = c.Validate()
	})
}

package node

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/mempool"
)

// A config with the mempool role and the JSON-RPC port survives
// RenderConfig → ParseConfig, and each bad field is named.
func TestMempoolConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := DefaultConfig(dir)
	c.Roles = []Role{RoleClient, RoleMempool}
	c.Mempool.Backend = mempool.BackendConfig{Host: "127.0.0.1:18334", User: "u", Pass: "p", CertPath: "/x/rpc.cert"}
	c.Mempool.RPC = MempoolRPCConfig{Enabled: true, Listen: "127.0.0.1:0", Cookie: "rpc.cookie", Upstream: "127.0.0.1:8332", UpstreamCookie: "/b/.cookie"}
	c.Mempool.VerdictWait = 5 * time.Second
	c.Mempool.GiveUpAfter = 6 * time.Hour
	c.Mempool.MaxAttempts = 40
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	raw, err := RenderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(dir, raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if !reflect.DeepEqual(back.Mempool, c.Mempool) || back.Discovery.PriceSatPerMB[RoleMempool] != 2 {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back.Mempool, c.Mempool)
	}
	for _, tc := range []struct{ yaml, field string }{
		{"roles: [mempool]\n", "mempool.backend"},
		{"roles: [relay]\nmempool:\n  rpc:\n    enabled: true\n", "mempool.rpc.enabled"},
		{"roles: [client]\nmempool:\n  rpc:\n    enabled: true\n    listen: \"anywhere\"\n", "mempool.rpc.listen"},
		{"roles: [client]\nmempool:\n  rpc:\n    enabled: true\n    user: a\n", "mempool.rpc.user"},
		{"roles: [client]\nmempool:\n  give_up_after: -1s\n", "mempool.give_up_after"},
		{"roles: [client]\nmempool:\n  max_attempts: -3\n", "mempool.max_attempts"},
	} {
		_, err := ParseConfig(dir, []byte(tc.yaml))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%q: %v, want an error naming %s", tc.yaml, err, tc.field)
		}
	}
}

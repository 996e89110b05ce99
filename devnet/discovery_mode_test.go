package devnet

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/node"
)

// TestDevnetDiscoveryIsPrivate: node.DefaultConfig joins the public IPFS
// DHT, but every devnet node's config.yaml says private mode with loopback
// bootstrap peers only (none for the first node), so a devnet never
// reaches the public DHT. Three loopback nodes; runs under -short.
func TestDevnetDiscoveryIsPrivate(t *testing.T) {
	t.Parallel()
	if def := node.DefaultConfig(t.TempDir()); def.Discovery.Mode != discovery.ModeIPFS {
		t.Fatalf("DefaultConfig mode %q: this test no longer shows devnet overriding it", def.Discovery.Mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	d, err := Start(ctx, Options{
		Dir: dir, Relays: 1, Exits: 1,
		SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "off",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("devnet close: %v", err)
		}
	})
	for i, name := range []string{"relay1", "exit1", "client"} {
		cfg, err := node.LoadConfig(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Discovery.Mode != discovery.ModePrivate {
			t.Errorf("%s: discovery.mode %q, want private", name, cfg.Discovery.Mode)
		}
		if i == 0 && len(cfg.Discovery.Bootstrap) != 0 {
			t.Errorf("%s (the first node): bootstrap %q, want none", name, cfg.Discovery.Bootstrap)
		}
		if i > 0 && len(cfg.Discovery.Bootstrap) == 0 {
			t.Errorf("%s: no bootstrap peers", name)
		}
		for _, s := range cfg.Discovery.Bootstrap {
			if a, err := ma.NewMultiaddr(s); err != nil || !manet.IsIPLoopback(a) {
				t.Errorf("%s: bootstrap %q is not a loopback address (%v)", name, s, err)
			}
		}
	}
}

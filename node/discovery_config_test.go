package node

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/co-infuse/co-infuse/discovery"
)

// TestDiscoveryModeDefaults: a new node (DefaultConfig, what `co-infuse
// init` renders) joins the public IPFS DHT through the Amino bootstrap
// peers; a config file without a mode key stays private with exactly the
// peers it lists, so an existing private deployment never moves to the
// public DHT; ipfs mode with its own list keeps that list. Nothing is
// dialled here.
func TestDiscoveryModeDefaults(t *testing.T) {
	t.Parallel()
	amino := discovery.AminoBootstrap()
	const local = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	rendered, err := RenderConfig(DefaultConfig("/tmp/unused"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		yaml     string
		wantMode string
		wantBoot []string
	}{
		{"init renders ipfs", string(rendered), discovery.ModeIPFS, amino},
		{"no mode key, no bootstrap", "roles: [relay]\n", discovery.ModePrivate, nil},
		{"no mode key, bootstrap", "discovery:\n  bootstrap: [\"" + local + "\"]\n", discovery.ModePrivate, []string{local}},
		{"ipfs, empty bootstrap", "discovery:\n  mode: ipfs\n  bootstrap: []\n", discovery.ModeIPFS, amino},
		{"ipfs, own bootstrap", "discovery:\n  mode: ipfs\n  bootstrap: [\"" + local + "\"]\n", discovery.ModeIPFS, []string{local}},
		{"private, no bootstrap", "discovery:\n  mode: private\n", discovery.ModePrivate, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConfig(t.TempDir(), []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if c.Discovery.Mode != tc.wantMode || !slices.Equal(c.Discovery.Bootstrap, tc.wantBoot) {
				t.Fatalf("mode %q bootstrap %q, want %q %q", c.Discovery.Mode, c.Discovery.Bootstrap, tc.wantMode, tc.wantBoot)
			}
		})
	}

	d := DefaultConfig(t.TempDir())
	if d.Discovery.Mode != discovery.ModeIPFS || !slices.Equal(d.Discovery.Bootstrap, amino) || len(amino) == 0 {
		t.Fatalf("DefaultConfig discovery = %q %q, want ipfs with the Amino list", d.Discovery.Mode, d.Discovery.Bootstrap)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultConfig does not validate: %v", err)
	}
	if !bytes.Contains(rendered, []byte("\n  mode: ipfs\n")) {
		t.Fatalf("rendered config does not say mode: ipfs:\n%s", rendered)
	}
	// DefaultConfig's list is a copy: changing it changes no other config.
	d.Discovery.Bootstrap[0] = "changed"
	if DefaultConfig(t.TempDir()).Discovery.Bootstrap[0] == "changed" {
		t.Fatal("DefaultConfig shares its bootstrap list")
	}
}

// TestDiscoveryModeNamedWhenBad: a bad mode is refused with an error naming
// discovery.mode and both valid values.
func TestDiscoveryModeNamedWhenBad(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"IPFS", "public", "amino", "private ", ""} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig(t.TempDir())
			c.Discovery.Mode = mode
			err := c.Validate()
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			for _, want := range []string{"discovery.mode", `"ipfs"`, `"private"`} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("err %q does not name %s", err, want)
				}
			}
		})
	}
}

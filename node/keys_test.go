package node

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/discovery"
)

// startStop starts a node on dir with roles on loopback, without payments
// or front ends, and returns the peer ID it ran with.
func startStop(t *testing.T, dir string, roles ...Role) peer.ID {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.Roles = roles
	off := false
	cfg.SOCKS.Enabled = &off
	cfg.Discovery.Mode = discovery.ModePrivate
	cfg.Discovery.Bootstrap = nil
	cfg.Discovery.AllowSameNetwork = true
	cfg.Network.AllowPrivatePeers = true
	cfg.ApplyDefaults()
	n, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	id := n.ID()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestIdentityByRole: a client-only node is a new peer ID each run and
// writes no identity key (an old one is neither used nor touched); a relay
// or exit keeps the one in identity.key.
func TestIdentityByRole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		roles      []Role
		oldKey     bool // an identity.key is there before the first start
		persistent bool
	}{
		{"client", []Role{RoleClient}, false, false},
		{"client with an old identity.key", []Role{RoleClient}, true, false},
		{"relay", []Role{RoleRelay}, false, true},
		{"exit", []Role{RoleExit}, false, true},
		{"client and relay", []Role{RoleClient, RoleRelay}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			keyPath := filepath.Join(dir, IdentityKeyFile)
			var old []byte
			var oldID peer.ID
			if tc.oldKey {
				k, err := LoadIdentity(dir) // as an earlier version wrote it
				if err != nil {
					t.Fatal(err)
				}
				if oldID, err = peer.IDFromPrivateKey(k); err != nil {
					t.Fatal(err)
				}
				if old, err = os.ReadFile(keyPath); err != nil {
					t.Fatal(err)
				}
			}
			if got := (Config{Roles: tc.roles}).PersistentIdentity(); got != tc.persistent {
				t.Fatalf("PersistentIdentity() = %v, want %v", got, tc.persistent)
			}
			first := startStop(t, dir, tc.roles...)
			second := startStop(t, dir, tc.roles...)

			key, err := os.ReadFile(keyPath)
			switch {
			case !tc.persistent && first == second:
				t.Fatalf("client-only node kept peer ID %s across restarts", first)
			case tc.persistent && first != second:
				t.Fatalf("peer ID changed across restarts: %s, then %s", first, second)
			case !tc.persistent && !tc.oldKey && !os.IsNotExist(err):
				t.Fatalf("client-only node wrote %s (read: %v)", IdentityKeyFile, err)
			case tc.oldKey && !bytes.Equal(key, old):
				t.Fatalf("%s was changed or removed (read: %v)", IdentityKeyFile, err)
			case !tc.persistent && tc.oldKey && (first == oldID || second == oldID):
				t.Fatalf("client-only node ran with the old %s", IdentityKeyFile)
			case tc.persistent:
				k, err := crypto.UnmarshalPrivateKey(key)
				if err != nil {
					t.Fatal(err)
				}
				if id, _ := peer.IDFromPrivateKey(k); id != first {
					t.Fatalf("ran as %s, %s holds %s", first, IdentityKeyFile, id)
				}
			}
		})
	}
}

func TestEphemeralIdentityIsFresh(t *testing.T) {
	t.Parallel()
	a, err := EphemeralIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b, err := EphemeralIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if a.Equals(b) || a.Type() != crypto.Ed25519 {
		t.Fatalf("two per-run keys equal (%v) or not Ed25519 (%v)", a.Equals(b), a.Type())
	}
}

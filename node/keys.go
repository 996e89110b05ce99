package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Key files inside the data directory. Both are secret and kept at 0600.
const (
	IdentityKeyFile = "identity.key" // libp2p Ed25519 identity (protobuf form)
	OnionKeyFile    = "onion.key"    // X25519 circuit handshake key (raw 32 bytes)
)

// loadOrCreate reads a 0600 key file, or creates it with gen when it does not
// exist. A key file readable by group or others is refused rather than
// silently used: someone may already have copied it.
func loadOrCreate(path string, gen func() ([]byte, error)) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case err == nil:
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("key file %s has mode %v: other users may read it; run `chmod 600 %s` if you trust it, or delete it to make a new key", path, st.Mode().Perm(), path)
		}
		return os.ReadFile(path)
	case errors.Is(err, os.ErrNotExist):
		b, err := gen()
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(path, b, 0o600); err != nil {
			return nil, err
		}
		return b, nil
	default:
		return nil, fmt.Errorf("stat key file: %w", err)
	}
}

// writeFileAtomic writes via a temp file, fsync and rename so that a crash
// leaves either the old file or the new one, never half a key.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}

// PersistentIdentity reports whether a node with these roles keeps a
// permanent libp2p identity in IdentityKeyFile. Relays and exits do: their
// adverts are signed by it and clients find and check them by it. A
// client-only node does not: like a Tor client it is a fresh peer ID each
// run (EphemeralIdentity), so that a guard, or a node it buys from
// directly, cannot tell this run from the last one by its key. What a
// client must keep (wallet, discovery cache, guards) is stored without
// reference to its own peer ID. A node that is both client and relay is
// the relay's identity for everything it does.
func (c Config) PersistentIdentity() bool {
	return c.Has(RoleRelay) || c.Has(RoleExit) || c.Has(RoleMempool)
}

// EphemeralIdentity returns a fresh Ed25519 libp2p key that is never
// written anywhere: a client-only node's identity for one run. An
// IdentityKeyFile already in the data directory (from when the node was a
// relay, or from an older version) is left alone, neither used nor
// deleted.
func EphemeralIdentity() (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("generate per-run identity: %w", err)
	}
	return k, nil
}

// LoadIdentity returns the node's persistent libp2p identity, creating it on
// first use. Only relays and exits call it (Config.PersistentIdentity).
func LoadIdentity(dataDir string) (crypto.PrivKey, error) {
	raw, err := loadOrCreate(filepath.Join(dataDir, IdentityKeyFile), func() ([]byte, error) {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return nil, fmt.Errorf("generate identity: %w", err)
		}
		return crypto.MarshalPrivateKey(k)
	})
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	k, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("identity key %s is corrupt: %w", filepath.Join(dataDir, IdentityKeyFile), err)
	}
	return k, nil
}

package proxy

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeSecretFile writes data to path with mode 0600, through a temporary
// file in the same directory that is synced and then renamed over path, so
// a reader never sees half a secret and an old one is replaced whole. Both
// cookie files (the JSON-RPC port's and the control port's) are written
// this way, fresh at every start, as bitcoind and Tor do.
func writeSecretFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*") // created 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}

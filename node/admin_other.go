//go:build !unix

package node

import "os"

// checkSocket accepts any admin socket where Unix owners and modes do not
// exist; the data directory's own access control protects it.
func checkSocket(string, os.FileInfo) error { return nil }

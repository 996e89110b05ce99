//go:build unix

package node

import (
	"fmt"
	"os"
	"syscall"
)

// checkSocket accepts fi (from Lstat of path) only if it is a socket owned
// by this process's user with no group or other permission bits.
func checkSocket(path string, fi os.FileInfo) error {
	if fi.Mode().Type() != os.ModeSocket {
		return unsafeSocket(path, fileKind(fi.Mode())+", not a socket")
	}
	perm := fi.Mode().Perm()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return unsafeSocket(path, "owner unknown")
	}
	switch uid := int(st.Uid); {
	case uid != os.Getuid():
		return unsafeSocket(path, fmt.Sprintf("mode %04o owned by uid %d", perm, uid))
	case perm&0o077 != 0:
		return unsafeSocket(path, fmt.Sprintf("mode %04o", perm))
	}
	return nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "a special file"
	}
}

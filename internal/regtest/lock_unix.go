//go:build unix

package regtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// lockFileWait takes an exclusive flock on path, polling under ctx so a
// caller can give up, and returns the unlock function.
func lockFileWait(ctx context.Context, path string, progress io.Writer) (func(), error) {
	if progress == nil {
		progress = io.Discard
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open build lock: %w", err)
	}
	told := false
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("build lock: %w", err)
		}
		if !told {
			fmt.Fprintf(progress, "another process is building the daemons; waiting for it…\n")
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for build lock: %w", ctx.Err())
		case <-t.C:
		}
	}
}

package regtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHaveBinariesNeedsStamp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := binsIn(dir)
	if err := os.MkdirAll(filepath.Dir(b.Btcd), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b.Btcd, b.Btcctl, b.Lnd, b.Lncli} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if haveBinaries(dir) {
		t.Fatal("haveBinaries true without a stamp")
	}
	stamp := filepath.Join(dir, "bin", stampFile)
	if err := os.WriteFile(stamp, []byte("btcd v0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if haveBinaries(dir) {
		t.Fatal("haveBinaries true with a stale stamp")
	}
	if err := os.WriteFile(stamp, []byte(stampContent()), 0o644); err != nil {
		t.Fatal(err)
	}
	if !haveBinaries(dir) {
		t.Fatal("haveBinaries false with all binaries and a current stamp")
	}
	got, err := EnsureBinaries(context.Background(), dir, nil)
	if err != nil || got != b {
		t.Fatalf("EnsureBinaries = %+v, %v; want %+v without building", got, err, b)
	}
	if err := os.Remove(b.Lncli); err != nil {
		t.Fatal(err)
	}
	if haveBinaries(dir) {
		t.Fatal("haveBinaries true with lncli missing")
	}
}

func TestDefaultCacheDirEnv(t *testing.T) {
	t.Setenv("COINFUSE_DAEMON_CACHE", "/some/where")
	d, err := DefaultCacheDir()
	if err != nil || d != "/some/where" {
		t.Fatalf("DefaultCacheDir = %q, %v", d, err)
	}
	t.Setenv("COINFUSE_DAEMON_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	d, err = DefaultCacheDir()
	if err != nil || d != filepath.Join("/xdg", "co-infuse", "daemons") {
		t.Fatalf("DefaultCacheDir = %q, %v", d, err)
	}
}

func TestBuildLockExcludes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), lockFile)
	unlock, err := lockFileWait(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open file descriptions, so a second open in
	// this process contends like another process would.
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var progress bytes.Buffer
	if _, err := lockFileWait(ctx, path, &progress); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock = %v, want deadline exceeded", err)
	}
	if !strings.Contains(progress.String(), "waiting") {
		t.Errorf("no waiting message: %q", progress.String())
	}
	unlock()
	unlock2, err := lockFileWait(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestDaemonStopAndLogTail(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	logPath := filepath.Join(t.TempDir(), "d.log")
	// A daemon that logs a line and then waits to be told to stop.
	d, err := startDaemon("toy", sh, logPath, []string{"-c", "echo toy started; exec sleep 600"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll(ctx, func() (bool, error) {
		b, err := os.ReadFile(logPath)
		return strings.Contains(string(b), "toy started"), err
	}); err != nil {
		t.Fatalf("log line never appeared: %v", err)
	}
	if d.exited() {
		t.Fatal("daemon exited early")
	}
	msg := d.failure("checking %d", 42).Error()
	if !strings.Contains(msg, "checking 42") || !strings.Contains(msg, "toy started") {
		t.Fatalf("failure() = %q, want message and log tail", msg)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if !d.exited() {
		t.Fatal("daemon still running after stop")
	}
	if err := d.stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if !strings.Contains(d.failure("x").Error(), "exited") {
		t.Error("failure() after exit does not say the daemon exited")
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	if got := tail("abcdef", 3); got != "…def" {
		t.Fatalf("tail = %q", got)
	}
	if got := tail("ab", 3); got != "ab" {
		t.Fatalf("tail = %q", got)
	}
}

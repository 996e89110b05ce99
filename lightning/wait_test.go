package lightning

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestDialWaitFilesAppear: LND answers but its cert and macaroon are not
// there yet. DialWait reports the cert, then the macaroon, and connects
// once both are written.
func TestDialWaitFilesAppear(t *testing.T) {
	t.Parallel()
	cfg := startFake(t, &fakeLnd{})
	real := cfg
	dir := t.TempDir()
	cfg.TLSCertPath = filepath.Join(dir, "tls.cert")
	cfg.MacaroonPath = filepath.Join(dir, "admin.macaroon")
	cfg.WaitForCredentials = time.Minute
	var steps []string
	progress := func(what string) {
		steps = append(steps, what)
		// Play LND: write the file DialWait waits for, one at a time.
		switch {
		case strings.Contains(what, "tls cert"):
			copyFile(t, real.TLSCertPath, cfg.TLSCertPath)
		case strings.Contains(what, "macaroon"):
			copyFile(t, real.MacaroonPath, cfg.MacaroonPath)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := DialWait(ctx, cfg, progress)
	if err != nil {
		t.Fatalf("DialWait: %v", err)
	}
	defer c.Close()
	want := []string{"waiting for lnd tls cert at " + cfg.TLSCertPath, "waiting for lnd macaroon at " + cfg.MacaroonPath}
	if !slices.Equal(steps, want) {
		t.Fatalf("progress %q, want %q", steps, want)
	}
	if c.Info().Alias != "fake" {
		t.Fatalf("Info %+v", c.Info())
	}
}

// TestDialWaitLocked: a locked wallet is waited for too, and its line
// says what to do.
func TestDialWaitLocked(t *testing.T) {
	t.Parallel()
	f := &fakeLnd{err: status.Error(codes.Unknown, "wallet locked, unlock it to enable full RPC access")}
	cfg := startFake(t, f)
	cfg.WaitForCredentials = 500 * time.Millisecond
	var steps []string
	_, err := DialWait(context.Background(), cfg, func(s string) { steps = append(steps, s) })
	if !errors.Is(err, ErrWalletLocked) || !strings.Contains(err.Error(), "lnd.wait_for_credentials") {
		t.Fatalf("DialWait = %v, want ErrWalletLocked after the wait", err)
	}
	if len(steps) != 1 || !strings.Contains(steps[0], "lncli unlock") {
		t.Fatalf("progress %q", steps)
	}
}

// TestDialWaitExpires: the macaroon never comes; the error names it, on
// one line.
func TestDialWaitExpires(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Host: closedPort(t), TLSCertPath: writeCert(t, dir), MacaroonPath: filepath.Join(dir, "admin.macaroon"), WaitForCredentials: 300 * time.Millisecond}
	var steps []string
	_, err := DialWait(context.Background(), cfg, func(s string) { steps = append(steps, s) })
	if !errors.Is(err, ErrMacaroon) || !strings.Contains(err.Error(), "lnd.macaroonpath "+cfg.MacaroonPath) ||
		!strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("DialWait = %q, want one line naming the missing macaroon", err)
	}
	if len(steps) != 1 || steps[0] != "waiting for lnd macaroon at "+cfg.MacaroonPath {
		t.Fatalf("progress %q", steps)
	}
}

// TestDialWaitNoRetry: what waiting cannot fix comes back at once, and
// with no wait DialWait is Dial.
func TestDialWaitNoRetry(t *testing.T) {
	t.Parallel()
	cfg := startFake(t, &fakeLnd{err: status.Error(codes.Unknown, "permission denied")})
	cfg.WaitForCredentials = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	called := false
	if _, err := DialWait(ctx, cfg, func(string) { called = true }); !errors.Is(err, ErrPermissionDenied) || called {
		t.Fatalf("DialWait = %v (progress called %v), want ErrPermissionDenied at once", err, called)
	}
	dir := t.TempDir()
	cfg = Config{Host: closedPort(t), TLSCertPath: writeCert(t, dir), MacaroonPath: filepath.Join(dir, "none")}
	if _, err := DialWait(ctx, cfg, func(string) { called = true }); !errors.Is(err, ErrMacaroon) || called {
		t.Fatalf("DialWait without wait = %v (progress called %v), want ErrMacaroon at once", err, called)
	}
	if _, err := DialWait(ctx, Config{TLSCertPath: "x", MacaroonPath: "y", WaitForCredentials: -1}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative wait = %v, want ErrInvalidConfig", err)
	}
}

// TestDialWaitCanceled: ending ctx ends the wait.
func TestDialWaitCanceled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Host: closedPort(t), TLSCertPath: writeCert(t, dir), MacaroonPath: filepath.Join(dir, "admin.macaroon"), WaitForCredentials: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	_, err := DialWait(ctx, cfg, func(string) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DialWait = %v, want context.Canceled", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

package tornet

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needTor skips when Debian's tor is not installed (scripts/test.sh
// installs it).
func needTor(t *testing.T) {
	t.Helper()
	for _, b := range []string{"tor", "tor-gencert"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install tor)", b)
		}
	}
}

// torProcs lists the pids of processes whose command line mentions dir.
func torProcs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestNetworkBootstrapAndClose starts a network, bootstraps a second
// client in it, and checks that Close leaves no tor behind.
func TestNetworkBootstrapAndClose(t *testing.T) {
	needTor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	began := time.Now()
	n, err := Start(ctx, dir, Options{}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tornet bootstrap (3 authorities, 5 relays, first client at 100%%): %v", time.Since(began).Round(time.Millisecond))
	if got := torProcs(t, dir); len(got) != Authorities+5 {
		t.Errorf("%d tor processes run in %s, want %d", len(got), dir, Authorities+5)
	}
	c, err := n.Client(ctx)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	if s := c.Status(); !s.Running || s.Bootstrap != 100 {
		t.Errorf("client status %+v, want running at 100%%", s)
	}
	n.Close()
	n.Close()
	if got := torProcs(t, dir); len(got) != 0 {
		t.Errorf("tor processes left after Close: %v", got)
	}
}

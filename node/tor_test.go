package node

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTorConfig(t *testing.T) {
	t.Parallel()
	off := false
	for _, tc := range []struct {
		name             string
		mod              func(*Config)
		enabled, publish bool
		field            string // "" = valid
	}{
		{"off by default", func(*Config) {}, false, false, ""},
		{"enabled", func(c *Config) { c.Tor.Enabled = true }, true, true, ""},
		{"gateway role", func(c *Config) { c.Roles = []Role{RoleClient, RoleRelay, RoleExit, RoleTorGateway} }, true, true, ""},
		{"publish off", func(c *Config) { c.Tor.Enabled = true; c.Tor.PublishOnions = &off }, true, false, ""},
		{"torrc line break", func(c *Config) { c.Tor.Enabled = true; c.Tor.Torrc = []string{"A 1\nB 2"} }, true, true, "tor.torrc[0]"},
		{"gateway price", func(c *Config) { c.Discovery.PriceSatPerMB[RoleTorGateway] = 3 }, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig(t.TempDir())
			tc.mod(&c)
			c.ApplyDefaults()
			if c.Tor.Binary != "tor" || c.torDataDir() != filepath.Join(c.DataDir, "tor") {
				t.Errorf("defaults: binary %q, data dir %q", c.Tor.Binary, c.torDataDir())
			}
			if c.TorEnabled() != tc.enabled || c.TorPublishOnions() != tc.publish {
				t.Errorf("enabled %v publish %v, want %v %v", c.TorEnabled(), c.TorPublishOnions(), tc.enabled, tc.publish)
			}
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
			if err != nil {
				return
			}
			raw, err := RenderConfig(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseConfig(c.DataDir, raw)
			if err != nil {
				t.Fatalf("parse rendered config: %v\n%s", err, raw)
			}
			if !reflect.DeepEqual(got.Tor, c.Tor) {
				t.Fatalf("tor section round trip: got %+v, want %+v", got.Tor, c.Tor)
			}
		})
	}
}

func TestTorEnv(t *testing.T) {
	t.Parallel()
	c := DefaultConfig(t.TempDir())
	env := map[string]string{"CO_INFUSE_TOR_ENABLED": "true", "CO_INFUSE_TOR_BINARY": "/usr/sbin/tor", "CO_INFUSE_TOR_DATA_DIR": "/var/lib/ci-tor"}
	if _, err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if !c.Tor.Enabled || c.Tor.Binary != "/usr/sbin/tor" || c.torDataDir() != "/var/lib/ci-tor" {
		t.Fatalf("tor section from env: %+v", c.Tor)
	}
}

// TestNodeManagedTor starts a client node with the tor section on (a tor
// that can reach no directory, so nothing leaves the machine): status
// shows tor running and not bootstrapped, Close stops it.
func TestNodeManagedTor(t *testing.T) {
	if _, err := exec.LookPath("tor"); err != nil {
		t.Skip("tor not installed (apt-get install tor)")
	}
	t.Parallel()
	n := startUnreachableTorNode(t, false)
	st := n.Status()
	if st.Tor == nil || !st.Tor.Running || st.Tor.Bootstrap == 100 || st.Tor.Onions == nil {
		t.Errorf("status tor %+v: want running, not bootstrapped, onions []", st.Tor)
	}
	pid := n.Tor().Pid()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		t.Errorf("tor (pid %d) still runs after Close", pid)
	}
}

// startUnreachableTorNode starts a lone client node (private discovery,
// no bootstrap peers) with the tor section on and a tor that never
// bootstraps (unreachableTorrc), and the control port too if control. The
// node is closed in t.Cleanup (Close is safe twice).
func startUnreachableTorNode(t *testing.T, control bool) *Node {
	t.Helper()
	c := DefaultConfig(t.TempDir())
	c.Discovery.Mode = "private"
	c.Discovery.Bootstrap = nil
	c.SOCKS.Listen = "127.0.0.1:0"
	if control {
		c.Control.Enabled = true
		c.Control.Listen = "127.0.0.1:0"
	}
	c.Tor.Enabled = true
	c.Tor.Torrc = unreachableTorrc(t)
	c.ApplyDefaults()
	n, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// unreachableTorrc is a torrc whose only directory authority is a
// loopback port nobody listens on: tor starts but never bootstraps, and
// nothing leaves the machine.
func unreachableTorrc(t *testing.T) []string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	return []string{"TestingTorNetwork 1",
		"DirAuthority dead orport=1 no-v2 v3ident=" + strings.Repeat("AB", 20) + " " + dead + " " + strings.Repeat("CD", 20)}
}

// TestNodeTorFailsToStart: a node whose tor cannot start (the binary is
// missing, or exits at once on a torrc it refuses) fails Start with an
// error naming the cause, promptly, and leaves nothing behind: its SOCKS
// port is closed again and a second node can start on the same data dir
// without tor.
func TestNodeTorFailsToStart(t *testing.T) {
	if _, err := exec.LookPath("tor"); err != nil {
		t.Skip("tor not installed (apt-get install tor)")
	}
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"missing binary", func(c *Config) { c.Tor.Binary = filepath.Join(c.DataDir, "no-such-tor") }, "no-such-tor"},
		{"torrc tor refuses", func(c *Config) { c.Tor.Torrc = []string{"NoSuchOption 1"} }, "Unknown option 'NoSuchOption'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Hold a port, then free it: the node's SOCKS port, which
			// must be free again after the failed Start.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			socks := l.Addr().String()
			l.Close()
			c := DefaultConfig(t.TempDir())
			c.Discovery.Mode = "private"
			c.Discovery.Bootstrap = nil
			c.SOCKS.Listen = socks
			c.Tor.Enabled = true
			tc.mod(&c)
			c.ApplyDefaults()
			n, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err = n.Start(ctx)
			if err == nil {
				n.Close()
				t.Fatal("Start succeeded with a tor that cannot start")
			}
			if ctx.Err() != nil {
				t.Fatalf("Start waited for its deadline: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v; want an error naming %q", err, tc.want)
			}
			n.Close()
			// The same data dir and port without tor: the failed start
			// left no lock, process or listener behind.
			c.Tor.Enabled = false
			c.Tor.Binary, c.Tor.Torrc = "tor", nil
			n2, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			if err := n2.Start(ctx); err != nil {
				t.Fatalf("a node without tor on the same data dir and port: %v", err)
			}
			n2.Close()
		})
	}
}

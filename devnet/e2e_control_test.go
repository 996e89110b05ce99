package devnet

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/tor"
)

// TestE2EControlPortOnion: lnd's own controller code (lnd/tor, what lnd
// runs with tor.active and tor.v3) creates an onion service for the demo
// web server through the devnet client's control port (SAFECOOKIE, the
// cookie file the port wrote), real curl fetches the page through the
// SOCKS port at that .onion, lnd's health check sees the service, and
// lnd's DEL_ONION on Stop removes it from the client's Manager.
func TestE2EControlPortOnion(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := startTestDevnet(t, Options{Relays: 4, Exits: 1, ControlListen: "127.0.0.1:0"})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ctl := d.Client.ControlAddr()
	if ctl == nil || d.Client.ControlCookie() != filepath.Join(d.Client.Config().DataDir, "control_auth_cookie") {
		t.Fatalf("control port %v, cookie %q", ctl, d.Client.ControlCookie())
	}
	_, webPort, _ := net.SplitHostPort(d.WebAddr.String())
	port, _ := strconv.Atoi(webPort)

	c := tor.NewController(ctl.String(), "127.0.0.1", "")
	if err := c.Start(); err != nil {
		t.Fatalf("lnd controller Start: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "v3_onion_private_key")
	onion, err := c.AddOnion(tor.AddOnionConfig{VirtualPort: 80, TargetPorts: []int{port}, Store: tor.NewOnionFile(keyFile, 0o600, false, nil)})
	if err != nil {
		t.Fatalf("lnd controller AddOnion: %v", err)
	}
	t.Logf("lnd's controller got %s", onion.OnionService)
	if err := c.CheckOnionService(); err != nil {
		t.Fatalf("lnd health check: %v", err)
	}

	socks := d.Client.SOCKSAddr().String()
	var page curlResult
	waitFor(ctx, t, "the control-port onion through SOCKS", func() bool {
		page = runCurl(ctx, t, "--max-time", "30", "--socks5-hostname", socks, "http://"+onion.OnionService+"/")
		if page.code != 0 {
			t.Logf("curl: %v (retrying)", page)
		}
		return page.code == 0
	})
	if !strings.Contains(page.stdout, "Hello from the co-infuse devnet") {
		t.Fatalf("page: %q", page.stdout)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("lnd controller Stop (DEL_ONION): %v", err)
	}
	for _, s := range d.Client.Rendezvous().Services() {
		if s.Address == onion.OnionService {
			t.Fatal("service still published after DEL_ONION")
		}
	}
}

package node

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/rendezvous"
)

func TestControlConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		field string // "" = valid
	}{
		{"off by default", func(*Config) {}, ""},
		{"on", func(c *Config) { c.Control.Enabled = true }, ""},
		{"password only", func(c *Config) { c.Control.Enabled = true; c.Control.CookieFile = "off"; c.Control.Password = "pw" }, ""},
		{"null", func(c *Config) { c.Control.Enabled = true; c.Control.NullAuth = true }, ""},
		{"no client", func(c *Config) { c.Control.Enabled = true; c.Roles = []Role{RoleRelay} }, "control.enabled"},
		{"bad listen", func(c *Config) { c.Control.Enabled = true; c.Control.Listen = "9051" }, "control.listen"},
		{"null and password", func(c *Config) { c.Control.Enabled = true; c.Control.NullAuth = true; c.Control.Password = "x" }, "control.null_auth"},
		{"null off loopback", func(c *Config) {
			c.Control.Enabled = true
			c.Control.NullAuth = true
			c.Control.Listen = "0.0.0.0:9051"
		}, "control.null_auth"},
		{"no auth", func(c *Config) { c.Control.Enabled = true; c.Control.CookieFile = "off" }, "control.cookie_file"},
		{"password line break", func(c *Config) { c.Control.Enabled = true; c.Control.Password = "a\nb" }, "control.password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig(t.TempDir())
			tc.mod(&c)
			c.ApplyDefaults()
			if c.Control.Listen != "127.0.0.1:9051" && tc.name != "bad listen" && tc.name != "null off loopback" {
				t.Fatalf("default listen %q", c.Control.Listen)
			}
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestLoopbackTarget(t *testing.T) {
	t.Parallel()
	for target, want := range map[string]bool{
		"127.0.0.1:80": true, "[::1]:80": true, "localhost:1": true, "127.8.0.1:2": true,
		"10.0.0.1:80": false, "[::]:80": false, "example.com:80": false, "nonsense": false,
	} {
		if got := loopbackTarget(target); got != want {
			t.Errorf("loopbackTarget(%q) = %v", target, got)
		}
	}
}

func TestTorPortMaps(t *testing.T) {
	t.Parallel()
	got, err := torPortMaps([]rendezvous.Port{
		{Virtual: 8333, Target: "127.0.0.1:8334"},
		{Virtual: 9735, Target: "localhost:9911"},
		{Virtual: 80, Target: "[::1]:8080"},
	})
	want := []torproc.PortMap{
		{Virtual: 8333, Target: netip.MustParseAddrPort("127.0.0.1:8334")},
		{Virtual: 9735, Target: netip.MustParseAddrPort("127.0.0.1:9911")},
		{Virtual: 80, Target: netip.MustParseAddrPort("[::1]:8080")},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("torPortMaps = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"example.com:80", "nonsense", "127.0.0.1:http"} {
		if pm, err := torPortMaps([]rendezvous.Port{{Virtual: 80, Target: bad}}); err == nil {
			t.Errorf("torPortMaps(%q) = %v, want an error", bad, pm)
		}
	}
}

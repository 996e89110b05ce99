package node

import (
	"errors"
	"strings"
	"testing"
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

package lightning

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{Host: "127.0.0.1:10009", TLSCertPath: "tls.cert", MacaroonPath: "admin.macaroon"}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" means valid
	}{
		{"good", func(*Config) {}, ""},
		{"default host", func(c *Config) { c.Host = "" }, ""},
		{"ipv6 host", func(c *Config) { c.Host = "[::1]:10009" }, ""},
		{"host without port", func(c *Config) { c.Host = "127.0.0.1" }, "lnd.host"},
		{"host empty port", func(c *Config) { c.Host = "127.0.0.1:" }, "lnd.host"},
		{"no cert", func(c *Config) { c.TLSCertPath = "" }, "lnd.tlscertpath"},
		{"no macaroon", func(c *Config) { c.MacaroonPath = "" }, "lnd.macaroonpath"},
		{"negative rpc timeout", func(c *Config) { c.RPCTimeout = -time.Second }, "lnd.rpctimeout"},
		{"huge payment timeout", func(c *Config) { c.PaymentTimeout = 2 * time.Hour }, "lnd.paymenttimeout"},
		{"tiny payment timeout", func(c *Config) { c.PaymentTimeout = time.Millisecond }, "lnd.paymenttimeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Validate() = %q, does not name %s", err, tc.field)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	if c.Host != DefaultHost || c.RPCTimeout != DefaultRPCTimeout ||
		c.PaymentTimeout != DefaultPaymentTimeout || c.Logger == nil {
		t.Fatalf("withDefaults() = %+v", c)
	}
}

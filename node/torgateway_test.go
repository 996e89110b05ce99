package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/proxy"
)

// A tor-gateway node is priced like an exit unless the config says
// otherwise, and advertises that price.
func TestTorGatewayPriceDefault(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig(t.TempDir())
	cfg.Roles = []Role{RoleClient, RoleRelay, RoleExit, RoleTorGateway}
	cfg.Discovery.PriceSatPerMB = map[Role]uint64{RoleRelay: 1, RoleExit: 3}
	cfg.ApplyDefaults()
	if got := cfg.Discovery.PriceSatPerMB[RoleTorGateway]; got != 3 {
		t.Fatalf("tor-gateway price %d, want the exit's 3", got)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Discovery.PriceSatPerMB[RoleTorGateway] = MaxPriceSatPerMB + 1
	if err := cfg.Validate(); err == nil {
		t.Fatal("a tor-gateway price above the cap was accepted")
	}
}

func TestTorReady(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s  torproc.Status
		ok bool
	}{
		{torproc.Status{}, false},
		{torproc.Status{Running: true, Bootstrap: 75}, false},
		{torproc.Status{Running: false, Bootstrap: 100}, false},
		{torproc.Status{Running: true, Bootstrap: 100}, true},
	} {
		if err := torReady(tc.s); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.s, err)
		}
	}
}

// A gateway's tor reply reaches the SOCKS front end as that exact byte;
// other failures become general failure or TTL expired, never an onion
// code tor did not send.
func TestGatewayError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code byte
	}{
		{fmt.Errorf("dial: %w", &circuit.TorSocksError{Code: 0xF0}), 0xF0},
		{fmt.Errorf("dial: %w", &circuit.TorSocksError{Code: 0xF7}), 0xF7},
		{fmt.Errorf("dial: %w", circuit.ErrTimeout), 0x06},
		{fmt.Errorf("dial: %w", circuit.ErrServiceNotOffered), 0x01},
	} {
		var re *proxy.ReplyError
		if err := gatewayError(tc.err); !errors.As(err, &re) || re.Code != tc.code {
			t.Errorf("%v: got %v, want code 0x%02x", tc.err, err, tc.code)
		}
	}
	// No gateway known: nobody was asked, so descriptor not found (0xF0).
	if err := gatewayError(fmt.Errorf("select path: %w", errNoGateway)); !errors.Is(err, proxy.ErrOnionNotFound) {
		t.Errorf("no gateway: %v, want proxy.ErrOnionNotFound", err)
	}
}

package circuit

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// A gateway's Begin hook that fails with a *TorSocksError sends END
// tor-socks, and the client's Dial returns a *TorSocksError with the same
// byte; a code outside the SOCKS5 failure codes becomes END misc.
func TestDialTorSocksCode(t *testing.T) {
	t.Parallel()
	const onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
	tn := newTestNet(t, 3, func(i int, cfg *Config) {
		cfg.Begin = func(ctx context.Context, req BeginRequest) (net.Conn, error) {
			if req.Service != cell.ServiceTorGateway {
				return loopbackBegin(ctx, req)
			}
			// The test passes the code tor "sent" as the port.
			return nil, &TorSocksError{Code: byte(req.Target.Port())}
		}
	})
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2)
	for _, code := range []byte{0x01, 0x04, 0x05, 0x06, 0x08, 0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7} {
		t.Run(strconv.Itoa(int(code)), func(t *testing.T) {
			_, err := c.Dial(ctx, cell.ServiceTorGateway, mustTarget(t, onion+":"+strconv.Itoa(int(code))))
			var ts *TorSocksError
			if !errors.As(err, &ts) || ts.Code != code {
				t.Fatalf("dial = %v, want TorSocksError 0x%02x", err, code)
			}
			if !errors.Is(err, ErrTorSocks) {
				t.Fatalf("dial = %v does not match ErrTorSocks", err)
			}
		})
	}
	// 0x09 is no SOCKS5 failure code: the hop sends END misc instead.
	_, err := c.Dial(ctx, cell.ServiceTorGateway, mustTarget(t, onion+":9"))
	var ts *TorSocksError
	if errors.As(err, &ts) || !errors.Is(err, ErrClosed) {
		t.Fatalf("dial with code 0x09 = %v, want END misc (ErrClosed)", err)
	}
	if c.Err() != nil {
		t.Fatalf("refused dials broke the circuit: %v", c.Err())
	}
}

func TestEndFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want cell.End
	}{
		{nil, cell.End{Reason: cell.EndDone}},
		{wrapf(&TorSocksError{Code: 0xF6}), cell.End{Reason: cell.EndTorSocks, SocksCode: 0xF6}},
		{wrapf(&TorSocksError{Code: 0x05}), cell.End{Reason: cell.EndTorSocks, SocksCode: 0x05}},
		{wrapf(&TorSocksError{Code: 0x00}), cell.End{Reason: cell.EndMisc}},
		{wrapf(&TorSocksError{Code: 0xF8}), cell.End{Reason: cell.EndMisc}},
		{wrapf(ErrTorSocks), cell.End{Reason: cell.EndMisc}},
		{wrapf(ErrExitPolicy), cell.End{Reason: cell.EndExitPolicy}},
	} {
		if got := EndFor(tc.err); got != tc.want {
			t.Errorf("EndFor(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
		// Every answer encodes.
		if _, err := tc.want.AppendBinary(nil); err != nil {
			t.Errorf("%+v does not encode: %v", tc.want, err)
		}
	}
}

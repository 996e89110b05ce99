package lightning

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Polling bounds of DialWait: the first retry comes after waitPollMin,
// each gap doubles up to waitPollMax.
const (
	waitPollMin = 250 * time.Millisecond
	waitPollMax = 2 * time.Second
)

// DialWait is Dial for a start beside an LND that may not have written its
// TLS cert and macaroon yet, or may still be starting or locked: it calls
// Dial until it succeeds or cfg.WaitForCredentials has passed, and returns
// the Client or, on expiry, the last Dial error (which names the file or
// the state at fault). Errors waiting cannot fix (ErrInvalidConfig,
// ErrPermissionDenied, and any other error Dial returns) come back at once.
// With WaitForCredentials 0 it is Dial.
//
// progress, if not nil, is called with a one-line description ("waiting
// for lnd macaroon at /lnd/admin.macaroon") each time what DialWait waits
// for changes; it is called on DialWait's goroutine. DialWait returns
// ctx's error if ctx ends first.
func DialWait(ctx context.Context, cfg Config, progress func(string)) (*Client, error) {
	if cfg.WaitForCredentials <= 0 {
		return Dial(ctx, cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(cfg.WaitForCredentials)
	gap := waitPollMin
	last := ""
	for {
		c, err := Dial(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		what, ok := WaitingFor(cfg, err)
		if !ok {
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("gave up after lnd.wait_for_credentials %v: %w", cfg.WaitForCredentials, err)
		}
		if what != last && progress != nil {
			progress(what)
		}
		last = what
		t := time.NewTimer(min(gap, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		gap = min(2*gap, waitPollMax)
	}
}

// WaitingFor describes, in one line, what a Dial error says the node is
// waiting for, and reports whether waiting can fix it: a missing or
// unreadable cert or macaroon (LND writes them once its wallet exists), an
// LND that does not answer yet, is still starting or is locked.
func WaitingFor(cfg Config, err error) (string, bool) {
	switch {
	case errors.Is(err, ErrMacaroon):
		return "waiting for lnd macaroon at " + cfg.MacaroonPath, true
	case errors.Is(err, ErrTLSCert):
		return "waiting for lnd tls cert at " + cfg.TLSCertPath, true
	case errors.Is(err, ErrWalletLocked):
		return "waiting for lnd's wallet to be unlocked (lncli unlock)", true
	case errors.Is(err, ErrNotReady):
		return "waiting for lnd to finish starting", true
	case errors.Is(err, ErrUnreachable):
		host := cfg.Host
		if host == "" {
			host = DefaultHost
		}
		return "waiting for lnd to answer at " + host, true
	}
	return "", false
}

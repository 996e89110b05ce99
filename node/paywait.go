package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Waiting for LND (lnd.wait_for_credentials). Beside a new LND (docker
// compose, docker/README.md) LND writes its TLS cert and macaroon only
// once its wallet exists, and LND wants this node's control port up when
// its wallet is unlocked. A client with the setting therefore starts
// everything that does not need LND (SOCKS, control port, JSON-RPC,
// discovery, free circuits) and dials LND in the background
// (lightning.DialWait); paths with a paid hop fail with
// errPaymentsNotReady meanwhile. If the wait expires the node reports the
// one-line reason on Fatal. A relay or exit cannot run its paid hops or
// its advert without LND: it waits in Start instead.

// errPaymentsNotReady marks circuits refused because payments still wait
// for LND.
var errPaymentsNotReady = errors.New("payments not ready")

// payWait is what the node is waiting for while it waits for LND.
type payWait struct {
	mu   sync.Mutex
	on   bool   // guarded by mu: a wait is under way
	what string // guarded by mu: lightning.WaitingFor's line, or ""
}

// waitsForLND reports whether Start leaves LND to a background wait: a
// client-only node with payments on and lnd.wait_for_credentials set.
func (n *Node) waitsForLND() bool {
	return n.cfg.Payments.Enabled && n.cfg.LND.WaitForCredentials > 0 && !n.relays()
}

// progress returns lightning.DialWait's progress func: it logs each step
// and keeps it for status and errors.
func (w *payWait) progress(log *slog.Logger) func(string) {
	return func(what string) {
		w.mu.Lock()
		w.what = what
		w.mu.Unlock()
		log.Info("payments not ready", "subsys", "lightning", "state", what)
	}
}

// start marks the wait as under way; Start calls it before any front end
// opens, so no path is selected without a payer unnoticed.
func (w *payWait) start(first string) {
	w.mu.Lock()
	w.on, w.what = true, first
	w.mu.Unlock()
}

// done marks the wait as over.
func (w *payWait) done() {
	w.mu.Lock()
	w.on, w.what = false, ""
	w.mu.Unlock()
}

// waiting reports whether a wait is under way.
func (w *payWait) waiting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.on
}

// state is the line status shows: what the wait waits for, "" when none.
func (w *payWait) state() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on {
		return ""
	}
	return w.what
}

// notReady is the error a circuit with a paid hop gets during the wait.
func (w *payWait) notReady() error {
	what := w.state()
	if what == "" {
		what = "waiting for lnd"
	}
	return fmt.Errorf("%w: %s (lnd.wait_for_credentials)", errPaymentsNotReady, what)
}

// startPaymentsLater runs the wait for LND in a goroutine owned by the
// node (n.wg, stopped by Close through n.ctx): once LND answers it starts
// the wallet and the payment schedule; if the wait expires it sends the
// reason on n.fatal.
func (n *Node) startPaymentsLater() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		p, err := n.startPayments(n.ctx)
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Warn("payments could not start; stopping", "err", err)
				n.fatal <- err
			}
			return
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed { // Close is under way and passed the payer already
			_ = p.close()
			return
		}
		n.payPtr.Store(p)
		if err := n.startWallet(); err != nil {
			n.fatal <- err
			return
		}
		if n.cfg.Has(RoleClient) {
			if err := n.startPayer(); err != nil {
				n.fatal <- err
				return
			}
		}
		n.payWait.done()
		n.log.Info("payments ready", "subsys", "lightning")
	}()
}

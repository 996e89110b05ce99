package node

import (
	"context"
	"path/filepath"

	"github.com/co-infuse/co-infuse/internal/torproc"
)

// TorStatus is the managed tor (the tor section) in Status.
type TorStatus struct {
	// Running is whether tor is up with an authenticated control
	// connection (false between restarts).
	Running bool `json:"running"`
	// Bootstrap is tor's bootstrap progress, 0-100.
	Bootstrap int `json:"bootstrap"`
	// Restarts counts restarts after tor died.
	Restarts int `json:"restarts"`
	// LastError is tor's last failure, "" if none.
	LastError string `json:"last_error"`
	// Onions are the service ids published on Tor through it; never null.
	Onions []string `json:"onions"`
}

// torDataDir is tor.data_dir, relative paths taken in the data dir.
func (c *Config) torDataDir() string {
	if filepath.IsAbs(c.Tor.DataDir) {
		return c.Tor.DataDir
	}
	return filepath.Join(c.DataDir, c.Tor.DataDir)
}

// startTor starts the managed tor when the tor section is on. It does not
// wait for bootstrap: progress is logged in the background (torproc logs
// each step; this logs the outcome).
func (n *Node) startTor(ctx context.Context) error {
	if !n.cfg.TorEnabled() {
		return nil
	}
	t, err := torproc.Start(ctx, torproc.Config{
		Binary:  n.cfg.Tor.Binary,
		DataDir: n.cfg.torDataDir(),
		Torrc:   n.cfg.Tor.Torrc,
		Logger:  n.log,
	})
	if err != nil {
		return err
	}
	n.tor = t
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := t.WaitBootstrapped(n.ctx); err != nil {
			if n.ctx.Err() == nil {
				n.log.Warn("tor has not bootstrapped", "err", err)
			}
			return
		}
		n.log.Info("tor bootstrapped")
	}()
	return nil
}

// closeTor stops the managed tor, if any.
func (n *Node) closeTor() error {
	if n.tor == nil {
		return nil
	}
	return n.tor.Close()
}

// Tor is the managed tor, nil when the tor section is off.
func (n *Node) Tor() *torproc.Tor { return n.tor }

// torStatus is Status.Tor.
func (n *Node) torStatus() *TorStatus {
	if n.tor == nil {
		return nil
	}
	s := n.tor.Status()
	ts := &TorStatus{Running: s.Running, Bootstrap: s.Bootstrap, Restarts: s.Restarts, LastError: s.LastError, Onions: s.Onions}
	if ts.Onions == nil {
		ts.Onions = []string{}
	}
	return ts
}

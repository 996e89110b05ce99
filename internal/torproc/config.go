package torproc

import (
	"log/slog"
	"time"
)

// Config configures a managed tor.
type Config struct {
	// Binary is the tor executable, a path or a name looked up in PATH.
	// Default "tor".
	Binary string
	// DataDir is tor's DataDirectory; required. It is created 0700 if
	// missing and holds torrc, the control cookie (0600), the control
	// port file, tor's state and its notice log.
	DataDir string
	// Torrc are extra torrc lines appended verbatim after ours (e.g.
	// tornet.Network.Torrc() to join a private network).
	Torrc []string
	// Logger receives progress and supervision events. Default
	// slog.Default().
	Logger *slog.Logger
	// BootstrapTimeout bounds WaitBootstrapped when its ctx has no
	// deadline. Default 3m.
	BootstrapTimeout time.Duration
	// StartTimeout bounds one start of tor up to an authenticated control
	// connection. Default 60s.
	StartTimeout time.Duration
	// RestartBackoff is the first wait before restarting a tor that
	// died; it doubles at each consecutive failure up to
	// MaxRestartBackoff. Defaults 500ms and 30s.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
}

func (c *Config) applyDefaults() {
	if c.Binary == "" {
		c.Binary = "tor"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BootstrapTimeout <= 0 {
		c.BootstrapTimeout = 3 * time.Minute
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.RestartBackoff <= 0 {
		c.RestartBackoff = 500 * time.Millisecond
	}
	if c.MaxRestartBackoff <= 0 {
		c.MaxRestartBackoff = 30 * time.Second
	}
}

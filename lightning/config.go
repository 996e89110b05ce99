package lightning

import (
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults used by Config.withDefaults.
const (
	// DefaultHost is LND's default gRPC listen address.
	DefaultHost = "127.0.0.1:10009"

	// DefaultRPCTimeout bounds each unary RPC that has no earlier deadline.
	DefaultRPCTimeout = 30 * time.Second

	// DefaultPaymentTimeout is how long LND may try to route a payment.
	DefaultPaymentTimeout = 60 * time.Second

	// maxPaymentTimeout bounds lnd.paymenttimeout; a payment that has not
	// settled in an hour is stuck, not slow.
	maxPaymentTimeout = time.Hour

	// maxMacaroonSize caps the macaroon file we read; real ones are a few
	// hundred bytes.
	maxMacaroonSize = 64 << 10

	// maxCertSize caps the TLS certificate file we read.
	maxCertSize = 64 << 10

	// maxRecvMsgSize caps a single gRPC response from LND.
	maxRecvMsgSize = 8 << 20
)

// Config says how to reach the user's LND. The YAML names match lnd.conf and
// lncli flags so that users can copy them: under an `lnd:` section,
// `host`, `tlscertpath` and `macaroonpath`.
type Config struct {
	// Host is LND's gRPC address, host:port. Default 127.0.0.1:10009.
	Host string `yaml:"host"`

	// TLSCertPath is LND's tls.cert (for example ~/.lnd/tls.cert). Required.
	TLSCertPath string `yaml:"tlscertpath"`

	// MacaroonPath is a macaroon with the permissions listed in
	// docs/LIGHTNING.md (for example
	// ~/.lnd/data/chain/bitcoin/mainnet/admin.macaroon). Required.
	MacaroonPath string `yaml:"macaroonpath"`

	// RPCTimeout bounds each unary RPC when the caller's context has no
	// earlier deadline. Duration; default 30s.
	RPCTimeout time.Duration `yaml:"rpctimeout"`

	// PaymentTimeout is how long LND may spend routing one payment.
	// Duration, whole seconds; default 60s.
	PaymentTimeout time.Duration `yaml:"paymenttimeout"`

	// WaitForCredentials is how long the node waits, after it starts, for
	// LND's TLS cert and macaroon to become readable and LND to answer
	// (DialWait), for a first start beside a new LND that writes them
	// later. Duration; default 0: no wait, a missing or unreadable file
	// stops the start at once, naming the file.
	WaitForCredentials time.Duration `yaml:"wait_for_credentials"`

	// Logger receives this package's logs; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// Validate reports the first unusable field, naming it as it appears in YAML.
// An empty Host is allowed and means DefaultHost.
func (c Config) Validate() error {
	if c.Host != "" {
		host, port, err := net.SplitHostPort(c.Host)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("%w: lnd.host %q: want host:port such as %s",
				ErrInvalidConfig, c.Host, DefaultHost)
		}
	}
	if c.TLSCertPath == "" {
		return fmt.Errorf("%w: lnd.tlscertpath is empty: set it to LND's tls.cert (usually ~/.lnd/tls.cert)",
			ErrInvalidConfig)
	}
	if c.MacaroonPath == "" {
		return fmt.Errorf("%w: lnd.macaroonpath is empty: set it to a macaroon such as ~/.lnd/data/chain/bitcoin/mainnet/admin.macaroon",
			ErrInvalidConfig)
	}
	if c.RPCTimeout < 0 {
		return fmt.Errorf("%w: lnd.rpctimeout %v is negative", ErrInvalidConfig, c.RPCTimeout)
	}
	if c.WaitForCredentials < 0 {
		return fmt.Errorf("%w: lnd.wait_for_credentials %v is negative", ErrInvalidConfig, c.WaitForCredentials)
	}
	if c.PaymentTimeout < 0 || (c.PaymentTimeout > 0 && c.PaymentTimeout < time.Second) || c.PaymentTimeout > maxPaymentTimeout {
		return fmt.Errorf("%w: lnd.paymenttimeout %v: want 1s to %v", ErrInvalidConfig, c.PaymentTimeout, maxPaymentTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.RPCTimeout == 0 {
		c.RPCTimeout = DefaultRPCTimeout
	}
	if c.PaymentTimeout == 0 {
		c.PaymentTimeout = DefaultPaymentTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

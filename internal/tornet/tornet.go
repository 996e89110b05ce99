package tornet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/internal/loopport"
	"github.com/co-infuse/co-infuse/internal/torproc"
)

// Options shapes the network.
type Options struct {
	// Relays is how many relays run besides the three authorities.
	// Default 5.
	Relays int
	// Exits is how many of the relays are exits, with the policy accept
	// 127.0.0.0/8:* (and no final reject *:*, so that the policy summary
	// in the microdescriptors is not empty). Default 2.
	Exits int
	// Binary is the tor executable. Default "tor"; tor-gencert is looked
	// up beside it, then in PATH.
	Binary string
}

// Authorities is how many directory authorities a network has.
const Authorities = 3

// Voting schedule: the shortest that is stable. V3AuthVotingInterval
// must evenly divide a day and be at least 10 s; vote plus distribution
// delay must stay below half of it (without a consensus tor votes every
// interval/2). An initial interval of 5 s is accepted by tor but makes
// the first consensus unreliable (chutney's experience), so both are 10 s
// with 2 s delays.
const (
	votingInterval = 10
	voteDelay      = 2
	distDelay      = 2
)

// Network is a running private Tor network. Its methods are safe for
// concurrent use.
type Network struct {
	dir    string
	binary string
	log    *slog.Logger
	torrc  []string // DirAuthority lines and the rest of Torrc

	mu      sync.Mutex // guards below
	closed  bool
	nodes   []*torproc.Tor // authorities and relays
	clients []*torproc.Tor
	nclient int
}

// Start starts a network under dir (created if missing; each tor gets a
// subdirectory): three authorities and opts.Relays relays on 127.0.0.1
// ports picked free at start. It returns once a fresh client has
// bootstrapped to 100% in it, i.e. the consensus lists exits and clients
// can build circuits. ctx bounds the start; on error everything started
// is stopped.
func Start(ctx context.Context, dir string, opts Options, logger *slog.Logger) (*Network, error) {
	if opts.Relays <= 0 {
		opts.Relays = 5
	}
	if opts.Exits <= 0 {
		opts.Exits = 2
	}
	if opts.Exits > opts.Relays {
		return nil, fmt.Errorf("tornet: %d exits but only %d relays", opts.Exits, opts.Relays)
	}
	if opts.Binary == "" {
		opts.Binary = "tor"
	}
	if logger == nil {
		logger = slog.Default()
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("tornet: tor binary %q not found (install Debian's tor package): %w", opts.Binary, err)
	}
	gencert := filepath.Join(filepath.Dir(bin), "tor-gencert")
	if _, err := os.Stat(gencert); err != nil {
		if gencert, err = exec.LookPath("tor-gencert"); err != nil {
			return nil, fmt.Errorf("tornet: tor-gencert not found (it comes with Debian's tor package): %w", err)
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("tornet: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tornet: %w", err)
	}
	// A tor that loses one of its picked ports to another process between
	// the pick and its bind fails with ErrPortInUse; the whole network is
	// then started again on fresh ports in a fresh directory (authority
	// lines name the ports, so one tor cannot be restarted alone).
	const attempts = 3
	base := dir
	for attempt := 1; ; attempt++ {
		n, err := start(ctx, dir, opts, bin, gencert, logger)
		if err == nil || !errors.Is(err, torproc.ErrPortInUse) || attempt == attempts {
			return n, err
		}
		logger.Warn("tornet: a tor lost a picked port to another process; starting the network again on fresh ports", "subsys", "tornet", "attempt", attempt, "err", err)
		dir = filepath.Join(base, fmt.Sprintf("retry%d", attempt))
	}
}

// start is one attempt of Start in dir with the binaries already found.
func start(ctx context.Context, dir string, opts Options, bin, gencert string, logger *slog.Logger) (*Network, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tornet: %w", err)
	}
	n := &Network{dir: dir, binary: bin, log: logger.With("subsys", "tornet")}
	began := time.Now()

	ports, err := loopport.Pick(2*Authorities + opts.Relays)
	if err != nil {
		return nil, err
	}
	var first error
	type node struct {
		name  string
		torrc []string
	}
	// Authority keys (RSA, slow on a loaded machine) are made in parallel.
	authLines := make([]string, Authorities)
	authErrs := make(chan error, Authorities)
	for i := range Authorities {
		go func() {
			name := fmt.Sprintf("auth%d", i)
			line, err := makeAuthority(ctx, bin, gencert, filepath.Join(dir, name), name, ports[2*i], ports[2*i+1])
			authLines[i] = line
			authErrs <- err
		}()
	}
	for range Authorities {
		if err := <-authErrs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	n.torrc = append(n.torrc, authLines...)
	n.log.Info("authority keys made", "took", time.Since(began).Round(time.Millisecond))
	torsStarted := time.Now()
	var nodes []node
	for i := 0; i < Authorities; i++ {
		name := fmt.Sprintf("auth%d", i)
		orPort, dirPort := ports[2*i], ports[2*i+1]
		nodes = append(nodes, node{name, []string{
			fmt.Sprintf("ORPort 127.0.0.1:%d", orPort),
			fmt.Sprintf("DirPort 127.0.0.1:%d", dirPort),
			"AuthoritativeDirectory 1",
			"V3AuthoritativeDirectory 1",
			"AuthDirMaxServersPerAddr 0",
			"ExitPolicy reject *:*",
			fmt.Sprintf("TestingV3AuthInitialVotingInterval %d", votingInterval),
			fmt.Sprintf("TestingV3AuthInitialVoteDelay %d", voteDelay),
			fmt.Sprintf("TestingV3AuthInitialDistDelay %d", distDelay),
			fmt.Sprintf("V3AuthVotingInterval %d", votingInterval),
			fmt.Sprintf("V3AuthVoteDelay %d", voteDelay),
			fmt.Sprintf("V3AuthDistDelay %d", distDelay),
			"TestingDirAuthVoteExit *",
			"TestingDirAuthVoteGuard *",
			"TestingDirAuthVoteHSDir *",
		}})
	}
	n.torrc = append(n.torrc, "TestingTorNetwork 1", "ClientUseIPv6 0", "PathsNeededToBuildCircuits 0.25", "SafeLogging 1")
	for i := 0; i < opts.Relays; i++ {
		name := fmt.Sprintf("relay%d", i)
		lines := []string{fmt.Sprintf("ORPort 127.0.0.1:%d", ports[2*Authorities+i])}
		if i < opts.Exits {
			lines = append(lines, "ExitRelay 1", "ExitPolicy accept 127.0.0.0/8:*", "ExitPolicyRejectPrivate 0", "ExitPolicyRejectLocalInterfaces 0")
		} else {
			lines = append(lines, "ExitRelay 0", "ExitPolicy reject *:*")
		}
		nodes = append(nodes, node{name, lines})
	}

	// Start every tor at once: each start waits for its control port.
	errs := make(chan error, len(nodes))
	for _, nd := range nodes {
		go func() {
			torrc := append(append([]string{}, n.torrc...),
				"Nickname "+nd.name,
				"Address 127.0.0.1",
				"AssumeReachable 1",
				"ExtendAllowPrivateAddresses 1",
				"ShutdownWaitLength 0",
				"ContactInfo "+nd.name+"@test.invalid",
			)
			t, err := torproc.Start(ctx, torproc.Config{
				Binary:  bin,
				DataDir: filepath.Join(dir, nd.name),
				Torrc:   append(torrc, nd.torrc...),
				Logger:  logger.With("tor", nd.name),
			})
			if err == nil {
				n.mu.Lock()
				n.nodes = append(n.nodes, t)
				n.mu.Unlock()
			} else {
				err = fmt.Errorf("tornet: start %s: %w", nd.name, err)
			}
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		n.Close()
		return nil, first
	}
	n.log.Info("tor network started; waiting for a client to bootstrap", "authorities", Authorities, "relays", opts.Relays, "exits", opts.Exits)
	c, err := n.Client(ctx)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("tornet: first client: %w", err)
	}
	// The probe client has done its job; later clients are the callers'.
	n.mu.Lock()
	n.clients = n.clients[:len(n.clients)-1]
	n.mu.Unlock()
	c.Close()
	n.log.Info("tor network ready", "took", time.Since(began).Round(time.Millisecond), "since_tors_started", time.Since(torsStarted).Round(time.Millisecond))
	return n, nil
}

// makeAuthority creates an authority's keys in dir (tor-gencert, then
// tor --list-fingerprint for the relay identity) and returns its
// DirAuthority line.
func makeAuthority(ctx context.Context, bin, gencert, dir, name string, orPort, dirPort int) (string, error) {
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return "", fmt.Errorf("tornet: %w", err)
	}
	os.Chmod(dir, 0o700)
	cmd := exec.CommandContext(ctx, gencert, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
		"-a", fmt.Sprintf("127.0.0.1:%d", dirPort),
		"-i", "authority_identity_key", "-s", "authority_signing_key", "-c", "authority_certificate")
	cmd.Dir = keys
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tornet: tor-gencert for %s: %w: %s", name, err, out)
	}
	cmd = exec.CommandContext(ctx, bin, "--ignore-missing-torrc", "-f", os.DevNull, "--defaults-torrc", os.DevNull,
		"--quiet", "--list-fingerprint", "--orport", "1",
		"--dirserver", "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff",
		"--datadirectory", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tornet: tor --list-fingerprint for %s: %w: %s", name, err, out)
	}
	v3, err := firstField(filepath.Join(keys, "authority_certificate"), "fingerprint")
	if err != nil {
		return "", err
	}
	fp, err := firstField(filepath.Join(dir, "fingerprint"), "")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("DirAuthority %s orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s", name, orPort, v3, dirPort, fp), nil
}

// firstField returns the second word of the first line of path that
// starts with key (any line if key is "").
func firstField(path, key string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("tornet: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) >= 2 && (key == "" || w[0] == key) {
			return w[1], nil
		}
	}
	return "", fmt.Errorf("tornet: %s has no %q line", path, key)
}

// Torrc are the lines a tor needs to join the network (DirAuthority ×3,
// TestingTorNetwork 1, …); pass them as torproc.Config.Torrc.
func (n *Network) Torrc() []string { return append([]string(nil), n.torrc...) }

// Dir is the directory the network lives in.
func (n *Network) Dir() string { return n.dir }

// Client starts a tor client in the network (SocksPort and ControlPort
// on loopback, its data directory under the network's) and returns it
// bootstrapped. The Network owns it: Close stops it; the caller may
// Close it earlier.
func (n *Network) Client(ctx context.Context) (*torproc.Tor, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("tornet: network closed")
	}
	name := fmt.Sprintf("client%d", n.nclient)
	n.nclient++
	n.mu.Unlock()
	t, err := torproc.Start(ctx, torproc.Config{
		Binary:  n.binary,
		DataDir: filepath.Join(n.dir, name),
		Torrc:   n.Torrc(),
		Logger:  n.log.With("tor", name),
	})
	if err != nil {
		return nil, fmt.Errorf("tornet: %s: %w", name, err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		t.Close()
		return nil, errors.New("tornet: network closed")
	}
	n.clients = append(n.clients, t)
	n.mu.Unlock()
	if err := t.WaitBootstrapped(ctx); err != nil {
		return nil, fmt.Errorf("tornet: %s: %w", name, err)
	}
	return t, nil
}

// Close stops every tor of the network, clients first, and waits for
// them. Idempotent.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	clients, nodes := n.clients, n.nodes
	n.clients, n.nodes = nil, nil
	n.mu.Unlock()
	for _, group := range [][]*torproc.Tor{clients, nodes} {
		var wg sync.WaitGroup
		for _, t := range group {
			wg.Go(func() { t.Close() })
		}
		wg.Wait()
	}
	return nil
}

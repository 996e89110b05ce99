package dockertest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"gopkg.in/yaml.v3"

	"github.com/co-infuse/co-infuse/devnet"
	"github.com/co-infuse/co-infuse/node"
)

// devnetNet is one of compose.devnet.yml's networks as a test started it.
type devnetNet struct {
	name   string // compose's key: net-a
	subnet netip.Prefix
}

// cnet is a compose.devnet.yml project started by a test.
type cnet struct {
	t       testing.TB
	compose []string // the compose command and its project/file flags
	env     []string
	nets    []devnetNet
	// home maps a hop's peer ID to its service and the network it is
	// announced on (from the service's identity key and ipv4_address).
	home map[peer.ID]serviceHome
}

type serviceHome struct {
	service, network string
}

// startDevnet brings compose.devnet.yml up as a project of its own on three
// free /16 subnets, waits for a first download through it to work, and
// takes it all down (volumes included) in t.Cleanup.
func startDevnet(t testing.TB, ctx context.Context) *cnet {
	t.Helper()
	return startNet(t, ctx, netOpts{})
}

// netOpts change what startNet starts.
type netOpts struct {
	// files are compose files layered over compose.devnet.yml (names in
	// docker/).
	files []string
	// env is added to compose's environment.
	env []string
	// noWarmup: return once the client runs, without a first download.
	noWarmup bool
}

// startNet is startDevnet with opts.
func startNet(t testing.TB, ctx context.Context, opts netOpts) *cnet {
	t.Helper()
	composeCmd := needDocker(t)
	img := image(t)
	if _, err := run(ctx, "docker", "image", "inspect", builderImage); err != nil {
		t.Fatalf("the curl container's image %s is missing: %v", builderImage, err)
	}
	file := filepath.Join(repoRoot(t), "docker", "compose.devnet.yml")
	project := "coinfuse" + uniq()
	c := &cnet{t: t, compose: append(slices.Clone(composeCmd), "-p", project, "-f", file)}
	for _, f := range opts.files {
		c.compose = append(c.compose, "-f", filepath.Join(repoRoot(t), "docker", f))
	}
	octets := freeSlash16s(t, ctx, 3)
	c.env = append(os.Environ(),
		"CO_INFUSE_IMAGE="+img,
		"CO_INFUSE_TOOLS_IMAGE="+builderImage,
		"CO_INFUSE_SOCKS_PORT=", // any free host port
		"CO_INFUSE_CIRCUIT_BUILD_TIMEOUT=10s",
	)
	c.env = append(c.env, opts.env...)
	for i, key := range []string{"A", "B", "C"} {
		c.env = append(c.env, fmt.Sprintf("CO_INFUSE_NET_%s=10.%d", key, octets[i]))
		c.nets = append(c.nets, devnetNet{
			name:   "net-" + strings.ToLower(key),
			subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", octets[i])),
		})
	}
	c.home = readHomes(t, file)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := c.composeOut(ctx, "logs", "--no-color", "--tail", "40")
			t.Logf("compose logs:\n%s", logs)
		}
		if out, err := c.composeOut(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	// Relays and exits first, until each has published its advert; then
	// the client, whose first search for exits finds them all.
	var hops []string
	for _, h := range c.home {
		hops = append(hops, h.service)
	}
	slices.Sort(hops)
	if out, err := c.composeOut(ctx, append([]string{"up", "-d", "web", "curl"}, hops...)...); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	for _, h := range hops {
		waitFor(t, ctx, h+"'s advert published", func() (bool, error) {
			logs, err := c.composeOut(ctx, "logs", "--no-color", h)
			return strings.Contains(logs, `msg="advert published"`), err
		})
	}
	if out, err := c.composeOut(ctx, "up", "-d", "client"); err != nil {
		t.Fatalf("compose up client: %v\n%s", err, out)
	}
	if opts.noWarmup {
		return c
	}
	waitFor(t, ctx, "a first download through the container network", func() (bool, error) {
		_, err := c.download(ctx, "warmup", 1000, 20*time.Second)
		return err == nil, err
	})
	return c
}

// freeSlash16s picks n second octets x for 10.x.0.0/16 that no Docker
// network on this machine uses.
func freeSlash16s(t testing.TB, ctx context.Context, n int) []int {
	t.Helper()
	used := map[int]bool{}
	ids := strings.Fields(docker(t, ctx, "network", "ls", "-q"))
	if len(ids) > 0 {
		out := docker(t, ctx, append([]string{"network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, ids...)...)
		for _, s := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() && p.Addr().As4()[0] == 10 {
				if p.Bits() < 16 {
					return nil // a 10/8-wide network: no /16 inside is free
				}
				used[int(p.Addr().As4()[1])] = true
			}
		}
	}
	var out []int
	for _, x := range rand.Perm(150) {
		if o := 100 + x; !used[o] {
			out = append(out, o)
			if len(out) == n {
				return out
			}
		}
	}
	t.Fatal("no free 10.x.0.0/16 subnets for the test networks")
	return nil
}

// readHomes reads compose.devnet.yml's relays and exits: each one's peer ID
// (from its identity key) and the network it has a fixed address on.
func readHomes(t testing.TB, file string) map[peer.ID]serviceHome {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	out := map[peer.ID]serviceHome{}
	for name, s := range cf.Services {
		key := s.Environment["CO_INFUSE_IDENTITY_KEY"]
		if key == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(key)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		for netName, n := range s.Networks {
			if n.IPv4Address != "" {
				out[id] = serviceHome{service: name, network: netName}
			}
		}
		if out[id].network == "" {
			t.Fatalf("%s has no fixed address on any network", name)
		}
	}
	return out
}

// composeFile is what the tests read of a compose file.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Environment map[string]string `yaml:"environment"`
		Networks    map[string]struct {
			IPv4Address string `yaml:"ipv4_address"`
		} `yaml:"networks"`
		Ports   []string `yaml:"ports"`
		Volumes []string `yaml:"volumes"`
	} `yaml:"services"`
}

func (c *cnet) composeOut(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.compose[0], append(slices.Clone(c.compose[1:]), args...)...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// container returns the ID of service's container.
func (c *cnet) container(ctx context.Context, service string) string {
	c.t.Helper()
	out, err := c.composeOut(ctx, "ps", "-q", service)
	id := strings.TrimSpace(out)
	if err != nil || id == "" || strings.Contains(id, "\n") {
		c.t.Fatalf("container of %s: %v %q", service, err, out)
	}
	return id
}

// curlArgs is the command line in the curl container that downloads n
// bytes from the demo server through the client, with the SOCKS username
// user (its own circuit), and prints the bytes' SHA-256.
func curlArgs(user string, n int64, maxTime time.Duration, extra ...string) []string {
	cmd := fmt.Sprintf("set -o pipefail; curl -sS --fail --max-time %d --socks5-hostname client:9050 --proxy-user %s:x %s http://web:8080/bytes/%d | sha256sum",
		int(maxTime.Seconds()), user, strings.Join(extra, " "), n)
	return []string{"bash", "-c", cmd}
}

// download fetches n bytes through the network in the curl container with
// SOCKS username user and checks them against the demo server's bytes.
func (c *cnet) download(ctx context.Context, user string, n int64, maxTime time.Duration) (time.Duration, error) {
	start := time.Now()
	out, err := run(ctx, "docker", append([]string{"exec", c.container(ctx, "curl")}, curlArgs(user, n, maxTime)...)...)
	took := time.Since(start)
	if err != nil {
		return took, err
	}
	if got, want := strings.Fields(out + " ")[0], demoSum(n); got != want {
		return took, fmt.Errorf("downloaded bytes' sha256 %s, want %s", got, want)
	}
	return took, nil
}

func demoSum(n int64) string {
	h := sha256.New()
	io.CopyN(h, devnet.DemoBytes(n), n)
	return hex.EncodeToString(h.Sum(nil))
}

// status is the client's `co-infuse status --json`.
func (c *cnet) status(ctx context.Context) (node.Status, error) {
	return c.statusOf(ctx, "client")
}

// statusOf is service's `co-infuse status --json`.
func (c *cnet) statusOf(ctx context.Context, service string) (node.Status, error) {
	var st node.Status
	out, err := run(ctx, "docker", "exec", c.container(ctx, service), "/co-infuse", "status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// circuit returns the hops of the client's circuit for SOCKS username user
// that carried the most bytes, once it has at least min bytes at the exit.
func (c *cnet) circuit(ctx context.Context, user string, min uint64) ([]node.HopStatus, bool) {
	st, err := c.status(ctx)
	if err != nil || st.Client == nil {
		return nil, false
	}
	var best []node.HopStatus
	var most uint64
	for _, ci := range st.Client.Circuits {
		if ci.Isolation != user || len(ci.Hops) == 0 {
			continue
		}
		if b := ci.Hops[len(ci.Hops)-1].BytesCarried; b >= min && (best == nil || b > most) {
			best, most = ci.Hops, b
		}
	}
	return best, best != nil
}

// hopHomes maps hops to their services and checks that they are three,
// each announced on a different network with a different /16; it returns
// the services in path order.
func (c *cnet) hopHomes(hops []node.HopStatus) []serviceHome {
	c.t.Helper()
	if len(hops) != 3 {
		c.t.Fatalf("circuit has %d hops, want 3", len(hops))
	}
	var out []serviceHome
	groups := map[netip.Prefix]string{}
	for _, h := range hops {
		id, err := peer.Decode(h.Peer)
		if err != nil {
			c.t.Fatalf("hop peer %q: %v", h.Peer, err)
		}
		sh, ok := c.home[id]
		if !ok {
			c.t.Fatalf("hop %s is none of compose.devnet.yml's relays and exits", h.Peer)
		}
		var subnet netip.Prefix
		for _, n := range c.nets {
			if n.name == sh.network {
				subnet = n.subnet
			}
		}
		if prev, dup := groups[subnet]; dup {
			c.t.Fatalf("hops %s and %s are both in %s: path selection must keep hops in distinct /16s", prev, sh.service, subnet)
		}
		groups[subnet] = sh.service
		out = append(out, sh)
	}
	return out
}

// TestContainerNetwork runs compose.devnet.yml (3 relays and 3 exits, one of
// each on each of 3 networks with distinct /16 subnets, a client, a web
// server, a curl container: 9 containers) and checks, in order: a download
// through a 3-hop circuit whose hops sit in 3 different /16s; `docker kill`
// of the exit mid-download gives curl an error (no hang) and the next
// download succeeds on a path without it; a relay cut off from every
// network (`docker network disconnect`) is routed around.
func TestContainerNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := startDevnet(t, ctx)

	// 1. A download through three hops in three /16s.
	const n = 5_000_000
	if _, err := c.download(ctx, "first", n, 2*time.Minute); err != nil {
		t.Fatalf("download: %v", err)
	}
	hops, ok := c.circuit(ctx, "first", n)
	if !ok {
		t.Fatal("no circuit for the download in the client's status")
	}
	first := c.hopHomes(hops)
	t.Logf("first path: %s → %s → %s", first[0].service, first[1].service, first[2].service)

	// 2. Kill the exit of a download in flight.
	curlC := c.container(ctx, "curl")
	slow := exec.CommandContext(ctx, "docker", append([]string{"exec", curlC},
		curlArgs("killed", 200_000_000, 5*time.Minute, "--limit-rate", "2M")...)...)
	var slowOut strings.Builder
	slow.Stdout, slow.Stderr = &slowOut, &slowOut
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- slow.Wait() }()
	var inFlight []node.HopStatus
	waitFor(t, ctx, "the slow download under way", func() (bool, error) {
		inFlight, ok = c.circuit(ctx, "killed", 500_000)
		return ok, nil
	})
	killed := c.hopHomes(inFlight)[2]
	t.Logf("killing exit %s mid-download", killed.service)
	docker(t, ctx, "kill", c.container(ctx, killed.service))
	select {
	case err := <-slowDone:
		if err == nil {
			t.Fatalf("curl succeeded although its exit was killed: %s", slowOut.String())
		}
		t.Logf("curl after the kill: %v: %s", err, strings.TrimSpace(slowOut.String()))
	case <-time.After(3 * time.Minute):
		t.Fatal("curl still running 3 minutes after its exit was killed")
	}
	var after []serviceHome
	waitFor(t, ctx, "a download after the kill", func() (bool, error) {
		user := "afterkill" + uniq()
		if _, err := c.download(ctx, user, n, time.Minute); err != nil {
			return false, err
		}
		hops, ok := c.circuit(ctx, user, n)
		if ok {
			after = c.hopHomes(hops)
		}
		return ok, nil
	})
	for _, h := range after {
		if h.service == killed.service {
			t.Fatalf("the path after the kill uses the killed %s", killed.service)
		}
	}
	t.Logf("path after the kill: %s → %s → %s", after[0].service, after[1].service, after[2].service)

	// 3. Partition a relay of that path (one not in the killed exit's
	// network, so that a path through all three networks remains).
	var cut serviceHome
	for _, h := range after[:2] {
		if h.network != killed.network {
			cut = h
		}
	}
	if cut.service == "" {
		t.Fatalf("no relay of %v outside %s", after, killed.network)
	}
	cutC := c.container(ctx, cut.service)
	for _, n := range c.nets {
		netID := docker(t, ctx, "inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks "%s").NetworkID}}`, projectNet(c, n.name)), cutC)
		docker(t, ctx, "network", "disconnect", "-f", netID, cutC)
	}
	t.Logf("cut %s off every network", cut.service)
	waitFor(t, ctx, "a download routed around the partition", func() (bool, error) {
		user := "aftercut" + uniq()
		if _, err := c.download(ctx, user, n, time.Minute); err != nil {
			return false, err
		}
		hops, ok := c.circuit(ctx, user, n)
		if !ok {
			return false, nil
		}
		for _, h := range c.hopHomes(hops) {
			if h.service == cut.service || h.service == killed.service {
				return false, fmt.Errorf("path through %s", h.service)
			}
		}
		return true, nil
	})
}

// projectNet is the Docker network name compose gives network n.
func projectNet(c *cnet, n string) string {
	for i, a := range c.compose {
		if a == "-p" && i+1 < len(c.compose) {
			return c.compose[i+1] + "_" + n
		}
	}
	return n
}

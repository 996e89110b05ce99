package devnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// rvWatch records what the rendezvous-role nodes learn: the previous hop
// of every stream by kind, and (bounded) the bytes they splice.
type rvWatch struct {
	mu      sync.Mutex
	prev    map[string]map[peer.ID]bool // kind -> previous hops seen
	spliced []byte                      // first maxSpliced bytes spliced
	total   int
}

const maxSpliced = 4 << 20

func (w *rvWatch) observe(kind string, prev peer.ID, b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if prev != "" {
		if w.prev[kind] == nil {
			w.prev[kind] = map[peer.ID]bool{}
		}
		w.prev[kind][prev] = true
	}
	w.total += len(b)
	if room := maxSpliced - len(w.spliced); room > 0 {
		w.spliced = append(w.spliced, b[:min(room, len(b))]...)
	}
}

func startHSDevnet(t *testing.T) (*Devnet, *rvWatch) {
	w := &rvWatch{prev: map[string]map[peer.ID]bool{}}
	// Six relays: a service's rendezvous circuit is guard → vanguard →
	// middle → rendezvous point, four distinct relays; with only four, the
	// loss of one (TestE2EOnionIntroPointLost) leaves no path at all
	// whenever the client's rendezvous point and the service's vanguard
	// are two of the three left, and every connection failed with 0xF3.
	d := startTestDevnet(t, Options{Relays: 6, Exits: 2, WebOnion: true,
		NodeOptions: func(name string) []node.Option {
			if strings.HasPrefix(name, "relay") {
				return []node.Option{node.WithRendezvousObserver(w.observe)}
			}
			return nil
		}})
	if d.WebOnion == "" {
		t.Fatal("devnet published no onion service")
	}
	return d, w
}

// TestE2EOnionService: the demo web server, published as an onion service
// by the client's rendezvous.Manager, is fetched by real curl through the
// SOCKS port (--socks5-hostname) over intro point and rendezvous point:
// the page and 1 MiB of known bytes arrive intact; the rendezvous nodes
// relayed only ciphertext (none of the payload appears in what they
// spliced) and saw only middle relays as previous hops, never the client
// or the service; an unknown onion gets 0xF0 and a bad checksum 0xF6.
func TestE2EOnionService(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d, w := startHSDevnet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()

	var page curlResult
	waitFor(ctx, t, "the onion page through SOCKS", func() bool {
		page = runCurl(ctx, t, "--max-time", "30", "--socks5-hostname", socks, "http://"+d.WebOnion+"/")
		if page.code != 0 {
			t.Logf("curl to the onion service: %v (retrying)", page)
		}
		return page.code == 0
	})
	if !strings.Contains(page.stdout, "Hello from the co-infuse devnet") {
		t.Fatalf("onion page: %q", page.stdout)
	}

	// The server closes first (Connection: close): the response still
	// arrives whole through the rendezvous.
	if n, err := socksGet(ctx, d, "close-first", d.WebOnion, 80, 5000); err != nil || n != 5000 {
		t.Fatalf("onion fetch with Connection: close: %d bytes, %v", n, err)
	}

	const size = 1 << 20
	r := mustCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, fmt.Sprintf("http://%s/bytes/%d", d.WebOnion, size))
	want := sha256.New()
	io.Copy(want, io.LimitReader(DemoBytes(size), size))
	if got := sha256.Sum256([]byte(r.stdout)); !bytes.Equal(got[:], want.Sum(nil)) || len(r.stdout) != size {
		t.Fatalf("onion download: %d bytes, sha256 %s", len(r.stdout), hex.EncodeToString(got[:]))
	}

	// What the rendezvous-role nodes learned.
	w.mu.Lock()
	spliced, total := bytes.Clone(w.spliced), w.total
	prev := map[string]map[peer.ID]bool{}
	for k, v := range w.prev {
		prev[k] = v
	}
	w.mu.Unlock()
	if total < size {
		t.Fatalf("rendezvous points spliced %d bytes, want at least the %d downloaded", total, size)
	}
	if bytes.Contains(spliced, []byte("Hello from the co-infuse")) || bytes.Contains(spliced, []byte("HTTP/1.1")) {
		t.Fatal("a rendezvous point relayed plaintext")
	}
	payload, _ := io.ReadAll(io.LimitReader(DemoBytes(size), size))
	for off := 0; off+64 <= len(payload); off += 4096 {
		if bytes.Contains(spliced, payload[off:off+64]) {
			t.Fatalf("a rendezvous point relayed payload bytes at offset %d in the clear", off)
		}
	}
	for _, kind := range []string{rendezvous.TargetRendezvous, rendezvous.TargetIntroHold, rendezvous.TargetIntroduce, rendezvous.TargetDescPut, rendezvous.TargetDescGet} {
		if len(prev[kind]) == 0 {
			t.Errorf("no %s stream observed", kind)
		}
		if prev[kind][d.Client.ID()] {
			t.Errorf("a %s stream came straight from the client/service node", kind)
		}
	}
	t.Logf("rendezvous points spliced %d bytes of ciphertext; previous hops by kind: %v", total, prev)

	// An onion address with no descriptor: 0xF0; a bad checksum: 0xF6.
	k, _ := rendezvous.GenerateKey(rand.Reader)
	if _, rep, err := socksConnect(ctx, socks, "", "", k.Address(), 80); rep.rep != 0xF0 {
		t.Fatalf("SOCKS CONNECT to an unpublished onion: reply %#02x (%v), want 0xf0", rep.rep, err)
	}
	c := byte('a')
	if d.WebOnion[10] == 'a' {
		c = 'b'
	}
	bad := d.WebOnion[:10] + string(c) + d.WebOnion[11:]
	if _, rep, err := socksConnect(ctx, socks, "", "", bad, 80); rep.rep != 0xF6 {
		t.Fatalf("SOCKS CONNECT to a bad-checksum onion: reply %#02x (%v), want 0xf6", rep.rep, err)
	}
}

// TestE2EOnionIntroPointLost: when a node holding one of the service's
// introduction points stops, the service moves that point to another node
// and publishes a new descriptor, and clients with fresh credentials still
// reach it (trying the remaining intro points meanwhile).
func TestE2EOnionIntroPointLost(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d, _ := startHSDevnet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()
	fetch := func(user string) curlResult {
		return runCurl(ctx, t, "--max-time", "30", "--socks5-hostname", socks, "--proxy-user", user+":x", "http://"+d.WebOnion+"/")
	}
	waitFor(ctx, t, "the onion page", func() bool { return fetch("before").code == 0 })

	m := d.Client.Rendezvous()
	svc := m.Services()[0]
	var victim *node.Node
	for _, p := range svc.IntroPeers {
		if n := d.Node(p.String()); n != nil && n != d.Nodes[0] { // keep the bootstrap node
			victim = n
			break
		}
	}
	if victim == nil {
		t.Skipf("every intro point is on the bootstrap node: %v", svc.IntroPeers)
	}
	gone := victim.ID()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the intro point to move off the stopped node", func() bool {
		s := m.Services()[0]
		if s.Intros < len(s.IntroPeers) {
			return false
		}
		for _, p := range s.IntroPeers {
			if p == gone {
				return false
			}
		}
		return true
	})
	i := 0
	waitFor(ctx, t, "the onion page after the intro point moved", func() bool {
		i++
		r := fetch(fmt.Sprintf("after-%d", i))
		if r.code != 0 {
			t.Logf("fetch after the intro point moved: %v (retrying)", r)
		}
		return r.code == 0 && strings.Contains(r.stdout, "Hello from the co-infuse devnet")
	})
}

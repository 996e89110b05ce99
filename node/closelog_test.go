package node

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/co-infuse/co-infuse/circuit"
)

// records is a slog.Handler that keeps every record at info or above.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (r *records) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// attrs returns the attributes of the records logged so far, one map per
// record, values as strings.
func (r *records) attrs() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, rec := range r.got {
		m := map[string]string{"msg": rec.Message}
		rec.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// A circuit that a hop tore down is logged at info with its ID, the hop
// and its peer, and the reason.
func TestLogCircuitClosedByHop(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		hosts   []host.Host
		engines []*circuit.Engine
		hops    []circuit.HopInfo
	)
	for i := range 3 {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
		if err != nil {
			t.Fatal(err)
		}
		key, err := circuit.GenerateOnionKey()
		if err != nil {
			t.Fatal(err)
		}
		e, err := circuit.New(circuit.Config{Host: h, OnionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close(); _ = h.Close() })
		hosts, engines = append(hosts, h), append(engines, e)
		if i > 0 {
			hops = append(hops, circuit.HopInfo{Peer: h.ID(), Addrs: h.Addrs(), OnionKey: key.Public()})
		}
	}
	c, err := engines[0].Build(ctx, hops)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A circuit this client closes on request is no failure: nothing at
	// info.
	quiet, err := engines[0].Build(ctx, hops[:1])
	if err != nil {
		t.Fatal(err)
	}
	_ = quiet.Close()
	<-quiet.Done()
	rec := &records{}
	logCircuitClosed(slog.New(rec), quiet, nil)
	if got := rec.attrs(); len(got) != 0 {
		t.Errorf("a requested close logged at info: %v", got)
	}
	// The last hop goes away: the first hop tears the circuit down.
	_ = engines[2].Close()
	_ = hosts[2].Close()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("circuit still open after its last hop went away")
	}
	rec = &records{}
	logCircuitClosed(slog.New(rec), c, nil)
	got := rec.attrs()
	if len(got) != 1 {
		t.Fatalf("logged %d records at info, want 1: %v (close error %v)", len(got), got, c.Err())
	}
	line := got[0]
	t.Logf("logged %v (close error %v)", line, c.Err())
	hop := map[string]int{"1": 1, "2": 2}[line["hop"]]
	if hop == 0 || line["circuit"] == "" || line["reason"] == "" || line["by"] != "hop" {
		t.Fatalf("logged %v, want circuit, hop 1 or 2, by hop and a reason", line)
	}
	if want := hops[hop-1].Peer.String(); line["peer"] != want {
		t.Errorf("peer %s, want hop %d's %s", line["peer"], hop, want)
	}
}

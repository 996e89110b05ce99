package devnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/mempool"
)

// BenchmarkE2EMempool measures, in one devnet with three delivery nodes in
// front of the harness's regtest btcd, from one run:
//
//	direct      sendrawtransaction straight to btcd with btcd's rpcclient
//	            (the baseline: a full TLS handshake per call, as btcd
//	            closes each RPC connection after one answer)
//	direct-resumed  the same with a client that resumes TLS sessions, as
//	            the delivery nodes' backend client does: the fastest a
//	            direct caller can be; x-direct-resumed is co-infuse's time
//	            per call over this one's
//	co-infuse   sendrawtransaction through the client's JSON-RPC port until
//	            it returns: a delivery node accepted it into btcd's mempool
//	            (two one-use circuits, one SUBMIT each); x-direct is its
//	            time per call over direct's, and the *-ms metrics split a
//	            broadcast (mempool.Timings: check, persist = outbox write
//	            with fsync, dial, wait = round waiting for the write's
//	            checks, exchange = SUBMIT to VERDICT, broadcast = the whole
//	            Broadcast call; btcd-ms = mean time of the delivery nodes'
//	            sendrawtransaction calls, both copies; ready-frac = first
//	            copies served by a pre-built circuit)
//	outbox-add  the outbox's durable write alone (bbolt commit, two
//	            fdatasyncs) on the same disk: every co-infuse answer waits
//	            for one, so its x-direct-resumed is the floor of
//	            co-infuse's
//	broadcast-func  the client's Broadcast called directly (no JSON-RPC)
//	rpc-roundtrip   getprivatebroadcastinfo: the JSON-RPC front end alone
//	sustained   16 callers at once through the one client; reports tx/s
//	            and the same split
//
// Each iteration spends a fresh confirmed coin of a key the benchmark
// controls (funded outside the timer).
func BenchmarkE2EMempool(b *testing.B) {
	if testing.Short() {
		b.Skip("end-to-end benchmark; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(b.Context(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{
		Dir: b.TempDir(), SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "off",
		Relays: 3, Exits: 1, Mempool: 3, RPCListen: "127.0.0.1:0",
	})
	if err != nil {
		b.Fatalf("devnet: %v", err)
	}
	b.Cleanup(func() { d.Close() })
	direct := directBtcd(b, d.Chain)
	through := coinfuseRPC(b, d)
	key := newTestKey(b)

	send := func(b *testing.B, c *rpcclient.Client) bool {
		tx := key.spendOne(b)
		want := tx.TxHash().String()
		id, err := sendRaw(c, txHex(b, tx))
		if err != nil || id != want {
			b.Errorf("sendrawtransaction: %q, %v", id, err)
			return false
		}
		return true
	}
	resumed := resumingBtcd(b, d.Chain)
	sendResumed := func(b *testing.B) bool {
		tx := key.spendOne(b)
		want := tx.TxHash().String()
		id, err := resumed(ctx, txHex(b, tx))
		if err != nil || id != want {
			b.Errorf("sendrawtransaction (resumed TLS): %q, %v", id, err)
			return false
		}
		return true
	}
	var directOp, resumedOp time.Duration // the last baseline runs' time per call
	for _, tc := range []struct {
		name string
		send func(*testing.B) bool
	}{
		{"direct", func(b *testing.B) bool { return send(b, direct) }},
		{"direct-resumed", sendResumed},
		{"co-infuse", func(b *testing.B) bool { return send(b, through) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			key.fund(ctx, b, d.Chain, direct, b.N)
			before := takeSplit(d)
			b.ResetTimer()
			for range b.N {
				if !tc.send(b) {
					return
				}
			}
			b.StopTimer()
			op := b.Elapsed() / time.Duration(b.N)
			switch tc.name {
			case "direct":
				directOp = op
				return
			case "direct-resumed":
				resumedOp = op
				return
			}
			takeSplit(d).since(before).report(b)
			if directOp > 0 {
				b.ReportMetric(float64(op)/float64(directOp), "x-direct")
			}
			if resumedOp > 0 {
				b.ReportMetric(float64(op)/float64(resumedOp), "x-direct-resumed")
			}
		})
	}
	// The floor the durability rule sets: the outbox write (one bbolt
	// commit, two fdatasyncs) that every sendrawtransaction answer waits
	// for, on the same disk in the same minutes, without anything else;
	// x-direct-resumed here is the least co-infuse's ratio can be.
	b.Run("outbox-add", func(b *testing.B) {
		ob, err := mempool.OpenOutbox(filepath.Join(b.TempDir(), "floor.db"), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		var h chainhash.Hash
		tx := key.spend(b, []coin{{op: *wire.NewOutPoint(&h, 0), value: 1e6}}, []int64{1e6 - 2000})
		ck, err := mempool.CheckTx(txHex(b, tx))
		if err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			i++
			if _, err := ob.Add(mempool.Entry{TxID: fmt.Sprintf("%s-%d", ck.TxID, i), Raw: ck.Raw, Added: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
		if resumedOp > 0 {
			b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(resumedOp), "x-direct-resumed")
		}
	})
	// The mempool client's Broadcast without the JSON-RPC front end, to
	// split the time between the two.
	b.Run("broadcast-func", func(b *testing.B) {
		key.fund(ctx, b, d.Chain, direct, b.N)
		drainOutbox(ctx, b, d)
		b.ResetTimer()
		for range b.N {
			tx := key.spendOne(b)
			if _, err := d.Client.Mempool().Broadcast(ctx, txHex(b, tx), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One JSON-RPC round trip that sends nothing (getprivatebroadcastinfo),
	// the front end's own share of the co-infuse figure.
	b.Run("rpc-roundtrip", func(b *testing.B) {
		for b.Loop() {
			if _, err := through.RawRequest("getprivatebroadcastinfo", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sustained", func(b *testing.B) {
		const callers = 16
		key.fund(ctx, b, d.Chain, direct, b.N)
		drainOutbox(ctx, b, d)
		before := takeSplit(d)
		b.ResetTimer()
		start := time.Now()
		defer b.StopTimer() // the clients' cleanup is not timed
		work := make(chan struct{}, b.N)
		for range b.N {
			work <- struct{}{}
		}
		close(work)
		var wg sync.WaitGroup
		for range callers {
			// One RPC client each: rpcclient's HTTP POST mode sends one
			// request at a time.
			c := coinfuseRPC(b, d)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					if !send(b, c) {
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tx/s")
		takeSplit(d).since(before).report(b)
	})
}

// drainOutbox waits (untimed) until the client's outbox is empty: the
// echo checks of the previous sub-benchmark's transactions are done, so
// that each starts from a quiet client. Each transaction costs three
// circuit builds, and relays admit 50 CREATEs a second per neighbour
// (burst 200), so a backlog of echo queries would otherwise eat the next
// sub-benchmark's share.
func drainOutbox(ctx context.Context, b *testing.B, d *Devnet) {
	b.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		es, err := d.Client.Mempool().Queued()
		if err != nil {
			b.Fatal(err)
		}
		if len(es) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("outbox still holds %d transactions", len(es))
		case <-tick.C:
		}
	}
}

// split is where co-infuse's broadcasts spent their time: the client's
// Timings and the delivery nodes' time in btcd's sendrawtransaction.
type split struct {
	tm      mempool.Timings
	submits uint64
	backend time.Duration
}

func takeSplit(d *Devnet) split {
	s := split{tm: d.Client.Mempool().Stats().Timings}
	for _, n := range d.Nodes {
		if st, ok := n.DeliveryStats(); ok {
			s.submits += st.Submits
			s.backend += st.SubmitTime
		}
	}
	return s
}

func (s split) since(o split) split {
	t, p := s.tm, o.tm
	return split{
		tm: mempool.Timings{
			Calls: t.Calls - p.Calls, Check: t.Check - p.Check, Persist: t.Persist - p.Persist,
			Dial: t.Dial - p.Dial, Ready: t.Ready - p.Ready, Wait: t.Wait - p.Wait,
			Exchange: t.Exchange - p.Exchange, Total: t.Total - p.Total,
		},
		submits: s.submits - o.submits,
		backend: s.backend - o.backend,
	}
}

// report adds the mean of each span, in ms, to b's results.
func (s split) report(b *testing.B) {
	if s.tm.Calls == 0 {
		return
	}
	n := float64(s.tm.Calls)
	ms := func(d time.Duration) float64 { return float64(d) / n / 1e6 }
	b.ReportMetric(ms(s.tm.Check), "check-ms")
	b.ReportMetric(ms(s.tm.Persist), "persist-ms")
	b.ReportMetric(ms(s.tm.Dial), "dial-ms")
	b.ReportMetric(float64(s.tm.Ready)/n, "ready-frac")
	b.ReportMetric(ms(s.tm.Wait), "wait-ms")
	b.ReportMetric(ms(s.tm.Exchange), "exchange-ms")
	b.ReportMetric(ms(s.tm.Total), "broadcast-ms")
	if s.submits > 0 {
		b.ReportMetric(float64(s.backend)/float64(s.submits)/1e6, "btcd-ms")
	}
}

// resumingBtcd returns a sendrawtransaction call straight to the harness's
// btcd over HTTPS that keeps TLS sessions across btcd's one-answer
// connections: the fastest direct baseline.
func resumingBtcd(b *testing.B, chain *regtest.Network) func(context.Context, string) (string, error) {
	b.Helper()
	host, user, pass, cert := chain.BtcdRPC()
	pem, err := os.ReadFile(cert)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		b.Fatal("btcd's certificate does not parse")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}}}
	b.Cleanup(hc.CloseIdleConnections)
	return func(ctx context.Context, hexTx string) (string, error) {
		body, _ := json.Marshal(map[string]any{"jsonrpc": "1.0", "id": 1, "method": "sendrawtransaction", "params": []string{hexTx}})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.SetBasicAuth(user, pass)
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var out struct {
			Result string          `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return "", fmt.Errorf("HTTP %s: %w", resp.Status, err)
		}
		if len(out.Error) > 0 && string(out.Error) != "null" {
			return "", fmt.Errorf("btcd: %s", out.Error)
		}
		return out.Result, nil
	}
}

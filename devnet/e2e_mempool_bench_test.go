package devnet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
)

// BenchmarkE2EMempool measures, in one devnet with three delivery nodes in
// front of the harness's regtest btcd, from one run:
//
//	direct      sendrawtransaction straight to btcd (the baseline)
//	co-infuse   sendrawtransaction through the client's JSON-RPC port until
//	            it returns: a delivery node accepted it into btcd's mempool
//	            (two circuits built, one SUBMIT each)
//	broadcast-func  the client's Broadcast called directly (no JSON-RPC)
//	rpc-roundtrip   getprivatebroadcastinfo: the JSON-RPC front end alone
//	sustained   16 callers at once through the one client; reports tx/s
//
// Each iteration spends a fresh confirmed coin of a key the benchmark
// controls (funded outside the timer). bench.sh prints the ratio.
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
	for _, tc := range []struct {
		name string
		c    *rpcclient.Client
	}{{"direct", direct}, {"co-infuse", through}} {
		b.Run(tc.name, func(b *testing.B) {
			key.fund(ctx, b, d.Chain, direct, b.N)
			b.ResetTimer()
			for range b.N {
				if !send(b, tc.c) {
					return
				}
			}
		})
	}
	// The mempool client's Broadcast without the JSON-RPC front end, to
	// split the time between the two.
	b.Run("broadcast-func", func(b *testing.B) {
		key.fund(ctx, b, d.Chain, direct, b.N)
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
	})
}

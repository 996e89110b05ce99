// Command ensure-daemons builds the real daemons the tests and devnet use
// (btcd, btcctl, lnd, lncli) into the per-machine cache, printing progress,
// so that scripts/test.sh shows the slow first build instead of a silent
// test binary. It does nothing when the cache is already complete.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := regtest.DefaultCacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ensure-daemons:", err)
		os.Exit(1)
	}
	bins, err := regtest.EnsureBinaries(ctx, dir, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ensure-daemons:", err)
		os.Exit(1)
	}
	fmt.Printf("daemons ready: %s %s %s %s\n", bins.Btcd, bins.Btcctl, bins.Lnd, bins.Lncli)
}

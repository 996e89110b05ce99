package devnet

import "testing"

// TestE2EDevnet runs the tests that can share one network: 3 relays, 2
// exits and a client (devnet's loopback-allowing exits), all on kernel-chosen
// loopback ports. Each subtest keeps to its own isolation usernames, so what
// it reads from the client's circuit table is its own.
func TestE2EDevnet(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2})
	if len(d.Nodes) < 6 {
		t.Fatalf("devnet has %d nodes, want at least 6", len(d.Nodes))
	}
	t.Run("Download50MiB", func(t *testing.T) { t.Parallel(); testDownload50MiB(t, d) })
	t.Run("NameResolvedAtExit", func(t *testing.T) { t.Parallel(); testNameResolvedAtExit(t, d) })
	t.Run("ConcurrentDownloads", func(t *testing.T) { t.Parallel(); testConcurrentDownloads(t, d) })
	t.Run("ErrorMapping", func(t *testing.T) { t.Parallel(); testErrorMapping(t, d) })
	t.Run("Upload32MiB", func(t *testing.T) { t.Parallel(); testUpload(t, d) })
	t.Run("Pipelined", func(t *testing.T) { t.Parallel(); testPipelined(t, d) })
	t.Run("TorResolve", func(t *testing.T) { t.Parallel(); testTorResolve(t, d) })
	t.Run("Isolation", func(t *testing.T) { t.Parallel(); testIsolation(t, d) })
	t.Run("Garbage", func(t *testing.T) { t.Parallel(); testGarbage(t, d) })
	t.Run("BtcdThroughProxy", func(t *testing.T) { t.Parallel(); testBtcdThroughProxy(t, d) })
}

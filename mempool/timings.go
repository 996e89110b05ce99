package mempool

import "time"

// Timings sums where the time of Broadcast calls went, over the calls
// whose first round started at once (a free worker) and brought a verdict
// before VerdictWait: the figures BenchmarkE2EMempool splits the
// broadcast's latency with. Divide each sum by Calls for a mean.
type Timings struct {
	// Calls counts the Broadcast calls summed here.
	Calls uint64 `json:"calls"`
	// Check is CheckTx: hex decode and the transaction's sanity checks.
	Check time.Duration `json:"check_ns"`
	// Persist is the outbox write (bbolt commit and fsync); Broadcast
	// answers only after it.
	Persist time.Duration `json:"persist_ns"`
	// Dial is the first copy's Dial: taking a circuit built ahead (with its
	// stream open), or building one and opening its stream.
	Dial time.Duration `json:"dial_ns"`
	// Ready counts first copies whose Dial used a circuit built ahead.
	Ready uint64 `json:"ready"`
	// Wait is how long the round, with its circuit taken, still waited
	// for the outbox write to pass its checks (the SUBMIT goes out while
	// the fsync runs).
	Wait time.Duration `json:"wait_ns"`
	// Exchange is SUBMIT written to VERDICT read on the copy whose verdict
	// answered the call: the circuit's round trip and the delivery node's
	// backend call.
	Exchange time.Duration `json:"exchange_ns"`
	// Total is Broadcast's entry to its verdict.
	Total time.Duration `json:"total_ns"`
}

// add sums t's spans into ts.
func (ts *Timings) add(t Timings) {
	ts.Calls += t.Calls
	ts.Check += t.Check
	ts.Persist += t.Persist
	ts.Dial += t.Dial
	ts.Ready += t.Ready
	ts.Wait += t.Wait
	ts.Exchange += t.Exchange
	ts.Total += t.Total
}

package mempool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// TestBroadcastCommitFailsAfterSend: the outbox write passes its checks,
// the round sends the SUBMITs, and then the commit fails with an I/O
// error (not a crash). The transaction may be delivered although it is
// not queued, so Broadcast must not answer as if nothing was sent: its
// error is ErrMaybeSent, with code -1 and a message that says it may have
// been sent and will not be retried. The delivery nodes did get it.
func TestBroadcastCommitFailsAfterSend(t *testing.T) {
	t.Parallel()
	f := newFakeNet(t, 3)
	c := newTestClient(t, filepath.Join(t.TempDir(), "outbox.db"), f)
	fsync := errors.New("fsync: input/output error")
	c.outbox.commitFault = func() error { return fsync }
	h, _ := testTx(t, 5, false)
	_, err := c.Broadcast(context.Background(), h, nil)
	var e *Error
	if !errors.Is(err, ErrMaybeSent) || !errors.As(err, &e) || e.RPCCode() != CodeMisc {
		t.Fatalf("Broadcast after a failed commit: %v, want ErrMaybeSent with code -1", err)
	}
	if es, err := c.Queued(); err != nil || len(es) != 0 {
		t.Fatalf("queued %+v, %v: the failed write left an entry", es, err)
	}
	var subs uint64
	pollUntil(t, func() (bool, error) {
		subs = 0
		for _, s := range f.servers {
			subs += s.Stats().Submits
		}
		return subs > 0, nil
	}, func() string { return fmt.Sprintf("%d SUBMITs: the round never sent", subs) })
}

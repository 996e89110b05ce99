package pool

import (
	"errors"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
)

// blamedHop names the hop that a dead circuit's close error puts at fault,
// from the hop that reported it in a TEARDOWN (circuit.CloseError.Depth):
// that hop, when it gave up for a reason of its own (resource limit,
// timeout, protocol violation, internal error), or the hop after it, when
// it reports losing that hop (connect failed, link closed). A circuit
// closed on this side, or finished, requested, refused for payment, or
// torn down with no TEARDOWN (Depth 0) blames nobody.
func blamedHop(err error, path []circuit.HopInfo) (peer.ID, bool) {
	var ce *circuit.CloseError
	if !errors.As(err, &ce) || !ce.Remote || ce.Depth < 1 || ce.Depth > len(path) {
		return "", false
	}
	at := ce.Depth - 1
	switch ce.Reason {
	case cell.ReasonResource, cell.ReasonTimeout, cell.ReasonProtocol, cell.ReasonInternal:
	case cell.ReasonConnectFailed, cell.ReasonLinkClosed:
		at++
		if at >= len(path) {
			return "", false
		}
	default:
		return "", false
	}
	return path[at].Peer, true
}

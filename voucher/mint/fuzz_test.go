package mint

import (
	"context"
	"testing"

	"github.com/co-infuse/co-infuse/voucher"
)

// FuzzServe feeds arbitrary requests to the mint's dispatcher (the code
// behind the stream handler, store and fake Lightning included): it must
// never panic and must always answer with a well-formed message.
func FuzzServe(f *testing.F) {
	m := newFixture(f).open(f)
	f.Add([]byte{byte(voucher.MsgQuoteRequest), 0, 0, 0, 0, 0, 0, 0, 5})
	f.Add([]byte{byte(voucher.MsgMintRequest)})
	f.Add([]byte{0})
	f.Add([]byte{byte(voucher.MsgSwapRequest)})
	f.Add(append([]byte{byte(voucher.MsgCheckState), 1}, make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, req []byte) {
		if len(req) == 0 {
			return // ReadMessage never yields an empty message
		}
		resp := m.serve(context.Background(), peerOwner(alice), req)
		switch voucher.MsgType(resp[0]) {
		case voucher.MsgQuote:
			_, err := voucher.ParseQuote(resp)
			check(t, err)
		case voucher.MsgMintResponse:
			_, err := voucher.ParseMintResponse(resp)
			check(t, err)
		case voucher.MsgCheckStateResponse:
			_, err := voucher.ParseCheckStateResponse(resp)
			check(t, err)
		case voucher.MsgSwapResponse:
			_, err := voucher.ParseSwapResponse(resp)
			check(t, err)
		case voucher.MsgError:
			_, err := voucher.ParseErrorResponse(resp)
			check(t, err)
		default:
			t.Fatalf("answer of type %d", resp[0])
		}
	})
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package mempool

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// headerOnly sends one frame header and then ends, recording the largest
// buffer ReadFrame offered it.
type headerOnly struct {
	r      *bytes.Reader
	maxCap int
}

func (h *headerOnly) Read(p []byte) (int, error) {
	h.maxCap = max(h.maxCap, cap(p))
	return h.r.Read(p)
}

// TestReadFrameAllocatesAsDataArrives: a peer that sends only the 4-byte
// header of a maximal SUBMIT must not make the reader allocate the whole
// 400 kB body; 64 streams a circuit would otherwise pin 25 MB for 256
// bytes sent.
func TestReadFrameAllocatesAsDataArrives(t *testing.T) {
	t.Parallel()
	n := MaxFrameBody
	hdr := []byte{byte(KindSubmit), byte(n >> 16), byte(n >> 8), byte(n)}
	h := &headerOnly{r: bytes.NewReader(hdr)}
	if _, _, err := ReadFrame(h); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame: %v, want ErrUnexpectedEOF", err)
	}
	if h.maxCap > frameReadChunk {
		t.Errorf("ReadFrame offered a %d-byte buffer after a bare header, want at most %d", h.maxCap, frameReadChunk)
	}

	// A whole maximal frame still reads back intact.
	tx := bytes.Repeat([]byte{0xab}, MaxTxBytes)
	body, err := (&Submit{Tx: tx}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, KindSubmit, body); err != nil {
		t.Fatal(err)
	}
	k, got, err := ReadFrame(&buf)
	if err != nil || k != KindSubmit || !bytes.Equal(got, body) {
		t.Fatalf("ReadFrame of a full frame: %v %v %d bytes", k, err, len(got))
	}
}

// TestRejectionCodeClamped: a delivery node cannot hand the user's wallet
// a JSON-RPC or warm-up code through a rejection.
func TestRejectionCodeClamped(t *testing.T) {
	t.Parallel()
	for in, want := range map[int32]int{
		CodeVerify: CodeVerify, CodeRejected: CodeRejected, CodeAlreadyInChain: CodeAlreadyInChain,
		CodeDecode: CodeDecode, CodeMisc: CodeMisc, -8: -8,
		-32601: CodeRejected, -32600: CodeRejected, -28: CodeRejected, -9: CodeRejected, -2147483648: CodeRejected,
	} {
		err := Verdict{Status: Rejected, Code: in, Message: "x"}.Err()
		var e *Error
		if !errors.As(err, &e) || e.Code != want {
			t.Errorf("code %d: got %v, want %d", in, err, want)
		}
	}
}

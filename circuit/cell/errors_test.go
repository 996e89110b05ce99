package cell

import (
	"errors"
	"fmt"
	"testing"
)

func TestSentinels(t *testing.T) {
	t.Parallel()
	all := []error{ErrShort, ErrTooLong, ErrBadLength, ErrBadPadding, ErrTrailing,
		ErrUnknownCommand, ErrBadStream, ErrBadDepth, ErrUnknownReason,
		ErrBadService, ErrBadTarget, ErrBadHost, ErrBadAddr, ErrTooMany, ErrBadCode}
	if len(all) != len(sentinels) {
		t.Fatalf("%d sentinels here, %d named for testdata", len(all), len(sentinels))
	}
	for i, e := range all {
		wrapped := fmt.Errorf("ctx: %w", e)
		if !errors.Is(wrapped, e) || !errors.Is(wrapped, ErrMalformed) {
			t.Errorf("%v: wrapped error does not match itself and ErrMalformed", e)
		}
		for j, o := range all {
			if i != j && errors.Is(e, o) {
				t.Errorf("%v matches %v", e, o)
			}
		}
		if errors.Is(ErrMalformed, e) {
			t.Errorf("ErrMalformed matches %v", e)
		}
	}
	if errors.Is(errors.New("cell: input too short"), ErrMalformed) {
		t.Error("a foreign error matches ErrMalformed")
	}
}

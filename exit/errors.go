package exit

import (
	"errors"
	"fmt"

	"github.com/co-infuse/co-infuse/circuit"
)

var (
	// ErrBadRule: a policy rule string does not follow the rule syntax, or
	// an operator accept rule covers only non-public addresses the policy
	// does not open (NewPolicy).
	ErrBadRule = errors.New("exit: bad policy rule")
	// ErrBadPrivateRange: an entry of exit.allow_private_ranges is not
	// "loopback", a prefix or an address inside one non-public range.
	ErrBadPrivateRange = errors.New("exit: bad private range")
	// ErrBadTarget: a target or host the exit does not serve. Errors
	// carrying it also wrap circuit.ErrProtocol (the zero cell.Target) or
	// circuit.ErrResolveFailed (a .onion name, or a RESOLVE host outside
	// the grammar of cell.CheckHost).
	ErrBadTarget = errors.New("exit: bad target")
)

// PolicyError reports which rule refused an address. It unwraps to
// circuit.ErrExitPolicy. It names the rule, never the address, so it is safe
// to log.
type PolicyError struct {
	// Rule is the rule that refused; for the implicit final rule it is
	// "reject *:*" and Index is -1.
	Rule Rule
	// Index is the rule's position in the policy, from 0.
	Index int
	// Reason is set instead of Rule for refusals no rule expresses, such as
	// a non-public address, a scoped (zoned) IPv6 address or port 0. It
	// names a class and a registry range, never the address.
	Reason string
	// NotPublic is set when the address is not on the public internet and
	// no opened range contains it: refused before any rule.
	NotPublic bool
}

func (e *PolicyError) Error() string {
	switch {
	case e.Reason != "":
		return fmt.Sprintf("exit policy: %s", e.Reason)
	case e.Index < 0:
		return "exit policy: no rule accepts the target (implicit \"reject *:*\")"
	default:
		return fmt.Sprintf("exit policy: refused by rule %d %q", e.Index, e.Rule.String())
	}
}

// Unwrap lets errors.Is(err, circuit.ErrExitPolicy) match.
func (e *PolicyError) Unwrap() error { return circuit.ErrExitPolicy }

package payment

import (
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// RoleRelay is the role of a session that had no BEGIN at this hop: the
// hop only relayed its cells.
const RoleRelay = "relay"

// RoleStats counts a ledger's sessions of one role, or of all roles.
type RoleStats struct {
	// Open is the number of sessions in the ledger now.
	Open int
	// Sessions is the number of sessions ever opened, open ones included.
	Sessions uint64
	// BytesCharged is the bytes accounted (carried) for these sessions.
	BytesCharged uint64
	// SatsRedeemed is the sats their TOPUPs redeemed (earned).
	SatsRedeemed uint64
	// TopUps is the number of TOPUPs that credited something.
	TopUps uint64
	// Refused is the number of sessions refused for payment.
	Refused uint64
}

func (r *RoleStats) add(o RoleStats) {
	r.Open += o.Open
	r.Sessions += o.Sessions
	r.BytesCharged += o.BytesCharged
	r.SatsRedeemed += o.SatsRedeemed
	r.TopUps += o.TopUps
	r.Refused += o.Refused
}

// LedgerStats is a snapshot of a Ledger's counts since it was created.
type LedgerStats struct {
	// Total sums every role.
	Total RoleStats
	// Roles splits the counts by role: RoleRelay for sessions that never
	// had a BEGIN here, else the name of the first service noted
	// (cell.Service.String: "exit", "mempool", "rendezvous", ...). A role
	// is present once it has had a session.
	Roles map[string]RoleStats
}

// SessionStats is one open session as the ledger sees it.
type SessionStats struct {
	// Role is RoleRelay or the noted service's name.
	Role string
	// Allowance is the prepaid bytes left; negative while in debt (at
	// least -GraceBytes, unless NoteService repriced the session at a
	// dearer service, when it may be further in debt and is refused).
	Allowance int64
	// BytesCharged, SatsRedeemed, TopUps and Refused are as in RoleStats.
	BytesCharged uint64
	SatsRedeemed uint64
	TopUps       uint64
	Refused      bool
	// Opened is when the session's first cell was accounted.
	Opened time.Time
	// LastCell is when its last cell was accounted.
	LastCell time.Time
}

// stats is s as one session's RoleStats. l.mu must be held.
func (s *session) stats() RoleStats {
	r := RoleStats{Open: 1, Sessions: 1, BytesCharged: s.charged, SatsRedeemed: s.sats, TopUps: s.topUps}
	if s.refused {
		r.Refused = 1
	}
	return r
}

// Stats returns the ledger's counts. It walks every open session, so call
// it for reports, not per cell.
func (l *Ledger) Stats() LedgerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := LedgerStats{Roles: make(map[string]RoleStats, len(l.ended)+1)}
	for role, e := range l.ended {
		st.Roles[role] = e
	}
	for _, s := range l.sessions {
		r := st.Roles[s.roleName()]
		r.add(s.stats())
		st.Roles[s.roleName()] = r
	}
	for _, r := range st.Roles {
		st.Total.add(r)
	}
	return st
}

// Session returns the open session named by cookie, or false if the ledger
// holds none.
func (l *Ledger) Session(cookie [cell.CookieLen]byte) (SessionStats, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sessions[cookie]
	if s == nil {
		return SessionStats{}, false
	}
	return SessionStats{
		Role:         s.roleName(),
		Allowance:    s.allowance,
		BytesCharged: s.charged,
		SatsRedeemed: s.sats,
		TopUps:       s.topUps,
		Refused:      s.refused,
		Opened:       s.opened,
		LastCell:     s.seen,
	}, true
}

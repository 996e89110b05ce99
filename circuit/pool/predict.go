package pool

import (
	"cmp"
	"slices"
	"time"
)

// notePortLocked records that a stream asked for port at now and reports
// whether the port was not predicted before (so pre-building may start for
// it). Beyond maxPredictedPorts the least recently used port is forgotten.
func (p *Pool) notePortLocked(port uint16, now time.Time) bool {
	last, known := p.predicted[port]
	if known && now.Sub(last) < predictWindow {
		if now.After(last) {
			p.predicted[port] = now
		}
		return false
	}
	if !known && len(p.predicted) >= maxPredictedPorts {
		var oldest uint16
		var t time.Time
		for q, u := range p.predicted {
			if t.IsZero() || u.Before(t) {
				oldest, t = q, u
			}
		}
		delete(p.predicted, oldest)
	}
	p.predicted[port] = now
	return !slices.Contains(p.cfg.PredictedPorts, port)
}

// predictedLocked forgets ports unused for predictWindow and returns the
// predicted ports: those streams used, most recent first, then the
// configured ones.
func (p *Pool) predictedLocked(now time.Time) []uint16 {
	type use struct {
		port uint16
		at   time.Time
	}
	recent := make([]use, 0, len(p.predicted))
	for q, at := range p.predicted {
		if now.Sub(at) >= predictWindow {
			delete(p.predicted, q)
			continue
		}
		recent = append(recent, use{q, at})
	}
	slices.SortFunc(recent, func(a, b use) int {
		if c := b.at.Compare(a.at); c != 0 {
			return c
		}
		return cmp.Compare(a.port, b.port)
	})
	out := make([]uint16, 0, len(recent)+len(p.cfg.PredictedPorts))
	for _, u := range recent {
		out = append(out, u.port)
	}
	for _, q := range p.cfg.PredictedPorts {
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}

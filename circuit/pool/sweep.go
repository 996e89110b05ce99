package pool

import (
	"slices"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
)

// sweepLoop runs sweep until Close.
func (p *Pool) sweepLoop() {
	defer p.wg.Done()
	every := min(p.cfg.MaxDirtiness, p.cfg.IdleClose) / 4
	every = min(max(every, minSweep), maxSweep)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.sweep()
		}
	}
}

// sweep retires circuits and refills the clean set:
//   - a circuit that was torn down is forgotten;
//   - a key's circuit with no stream is closed once it is dirty, or once it
//     has been idle (no stream, not handed out) for IdleClose; never within
//     handoutGrace of Get handing it out;
//   - a clean circuit is closed after cleanLifetime, or once no predicted
//     port is accepted by its exit.
func (p *Pool) sweep() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	now := p.cfg.Now()
	var victims []*circuit.Circuit
	retire := func(e *entry) {
		p.forgetLocked(e)
		victims = append(victims, e.circ)
	}
	for _, es := range p.keyed {
		for _, e := range slices.Clone(es) {
			switch {
			case e.circ.Err() != nil:
				p.forgetLocked(e)
			case e.circ.NumStreams() > 0:
				e.busy = now
			case now.Sub(e.lastUse) < handoutGrace:
			case p.dirty(e, now):
				retire(e)
			case now.Sub(lastActive(e)) >= p.cfg.IdleClose:
				retire(e)
			}
		}
	}
	ports := p.predictedLocked(now)
	for _, e := range slices.Clone(p.clean) {
		switch {
		case e.circ.Err() != nil:
			p.forgetLocked(e)
		case now.Sub(e.built) >= cleanLifetime:
			retire(e)
		case !slices.ContainsFunc(ports, e.path.accepts):
			retire(e)
		}
	}
	p.refillLocked(now)
	p.mu.Unlock()
	closeAll(victims)
}

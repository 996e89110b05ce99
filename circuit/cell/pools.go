package cell

// Pool is a bounded free list of cells, safe for concurrent use. It keeps at
// most max idle cells; Get allocates a fresh cell when none is idle and Put
// drops the cell when max are already idle, so Get never blocks and the
// memory a Pool pins is bounded by max·Size bytes.
//
// Cells are zeroed on Put, so no key stream, plaintext or cookie lingers in an
// idle cell, and Get always returns a zeroed cell.
type Pool struct {
	// free holds idle, zeroed cells; its capacity is the bound.
	free chan *Cell
}

// NewPool returns a pool that keeps at most max idle cells. With max ≤ 0 it
// keeps none: Get always allocates and Put only zeroes.
func NewPool(max int) *Pool {
	if max < 0 {
		max = 0
	}
	return &Pool{free: make(chan *Cell, max)}
}

// Get returns a zeroed cell owned by the caller until it passes it to Put.
func (p *Pool) Get() *Cell {
	select {
	case c := <-p.free:
		return c
	default:
		return new(Cell)
	}
}

// Put zeroes c and keeps it for reuse if the pool has room. The caller must
// not use c afterwards, nor Put the same cell twice. Put(nil) does nothing.
func (p *Pool) Put(c *Cell) {
	if c == nil {
		return
	}
	c.Reset()
	select {
	case p.free <- c:
	default:
	}
}

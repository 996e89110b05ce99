package pool

import "errors"

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("pool: closed")

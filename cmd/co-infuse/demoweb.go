package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/co-infuse/co-infuse/devnet"
)

// cmdDemoWeb serves devnet.DemoHandler until SIGINT or SIGTERM.
func cmdDemoWeb(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("demo-web", aboutDemoWeb)
	listen := fs.String("listen", "127.0.0.1:8088", "address to serve on")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return startError{fmt.Errorf("demo-web --listen %s: %w", *listen, err)}
	}
	srv := &http.Server{Handler: devnet.DemoHandler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signalContext()
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "demo web server on %s\n", ln.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	<-done
	return nil
}

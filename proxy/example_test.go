package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"

	xproxy "golang.org/x/net/proxy"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/proxy"
)

// A SOCKS5 front end whose Dial stands in for a circuit: it sends
// "web.example" to a local test server and refuses everything else as the
// exit policy would. The client is the one lnd uses.
func ExampleNewSOCKS() {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from ", r.Host)
	}))
	defer web.Close()

	s, err := proxy.NewSOCKS(proxy.Config{
		Dial: func(ctx context.Context, iso proxy.Isolation, target cell.Target) (net.Conn, error) {
			if target.Host() != "web.example" {
				return nil, fmt.Errorf("stream: %w", circuit.ErrExitPolicy)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", web.Listener.Addr().String())
		},
		Resolve: func(context.Context, proxy.Isolation, string) (netip.Addr, error) {
			return netip.Addr{}, circuit.ErrResolveFailed
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	socks, _ := xproxy.SOCKS5("tcp", l.Addr().String(), &xproxy.Auth{User: "alice", Password: "x"}, xproxy.Direct)
	client := &http.Client{Transport: &http.Transport{Dial: socks.Dial}}
	resp, err := client.Get("http://web.example/")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	_, err = socks.Dial("tcp", "elsewhere.example:80")
	_, reason, _ := strings.Cut(err.Error(), "elsewhere.example:80: ")
	fmt.Println(reason) // x/net's text for reply 0x02
	client.CloseIdleConnections()

	_ = s.Shutdown(context.Background())
	fmt.Println(errors.Is(<-served, proxy.ErrServerClosed))
	// Output:
	// hello from web.example
	// unknown error connection not allowed by ruleset
	// true
}

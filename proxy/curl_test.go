package proxy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

// curlPath finds Debian's curl or skips: CI installs it.
func curlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed; install it (apt-get install curl) to run the real-client tests")
	}
	return p
}

// webBackend is a loopback HTTP server that answers every request with a
// fixed body naming the Host it was asked for.
func webBackend(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "co-infuse test page for %s", r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://")
}

func runCurl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), curlPath(t), append([]string{"--silent", "--show-error", "--max-time", "20", "--noproxy", ""}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no *_proxy variables from the environment
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

func TestCurlSOCKS(t *testing.T) {
	t.Parallel()
	_, backend := webBackend(t)
	_, port, _ := net.SplitHostPort(backend)
	f := newFakeNet(backend)
	addr := startSOCKS(t, f, nil)
	cases := []struct {
		name   string
		args   []string
		target string
		iso    Isolation
	}{
		{"socks5-hostname", []string{"--socks5-hostname", addr, "http://web.example:" + port + "/"}, "web.example:" + port, Isolation{}},
		{"socks5-hostname with user", []string{"--socks5-hostname", addr, "--proxy-user", "alice:s3cret", "http://web2.example:" + port + "/"}, "web2.example:" + port, Isolation{"alice", "s3cret"}},
		{"socks5 ipv4 literal", []string{"--socks5", addr, "http://" + backend + "/"}, backend, Isolation{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := runCurl(t, tc.args...)
			host, _, _ := net.SplitHostPort(tc.target)
			if !strings.HasPrefix(body, "co-infuse test page for "+host) {
				t.Fatalf("body %q", body)
			}
			for _, c := range f.got() {
				if c.target == tc.target && c.iso == tc.iso {
					return
				}
			}
			t.Fatalf("Dial never saw %q with %+v: %+v", tc.target, tc.iso, f.got())
		})
	}
}

func TestCurlHTTPConnect(t *testing.T) {
	t.Parallel()
	_, backend := webBackend(t)
	_, port, _ := net.SplitHostPort(backend)
	f := newFakeNet(backend)
	addr := startHTTP(t, f, nil)
	cases := []struct {
		name   string
		args   []string
		target string
		iso    Isolation
	}{
		{"tunnel", []string{"-p", "-x", "http://" + addr, "http://tunnel.example:" + port + "/"}, "tunnel.example:" + port, Isolation{}},
		{"tunnel with user", []string{"-p", "-x", "http://" + addr, "--proxy-user", "bob:pa:ss", "http://tunnel2.example:" + port + "/"}, "tunnel2.example:" + port, Isolation{"bob", "pa:ss"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := runCurl(t, tc.args...)
			host, _, _ := net.SplitHostPort(tc.target)
			if !strings.HasPrefix(body, "co-infuse test page for "+host) {
				t.Fatalf("body %q", body)
			}
			for _, c := range f.got() {
				if c.target == tc.target && c.iso == tc.iso {
					return
				}
			}
			t.Fatalf("Dial never saw %q with %+v: %+v", tc.target, tc.iso, f.got())
		})
	}
}

package dockertest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// imageConfig is the part of `docker image inspect` the tests read.
type imageConfig struct {
	Size   int64
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Healthcheck  *struct{ Test []string }
	}
}

func inspectImage(t testing.TB, ctx context.Context, img string) imageConfig {
	t.Helper()
	var ic []imageConfig
	if err := json.Unmarshal([]byte(docker(t, ctx, "image", "inspect", img)), &ic); err != nil || len(ic) != 1 {
		t.Fatalf("inspect %s: %v", img, err)
	}
	return ic[0]
}

// TestImage checks what the image is: a non-root user, the data volume, the
// health check through `co-infuse status`, the binary alone (no shell), a
// stamped version, and little beyond the binary's size.
func TestImage(t *testing.T) {
	img := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ic := inspectImage(t, ctx, img)
	if ic.Config.User != "10001:10001" {
		t.Errorf("user %q, want 10001:10001 (non-root, numeric)", ic.Config.User)
	}
	if _, ok := ic.Config.Volumes["/data"]; !ok {
		t.Errorf("volumes %v lack /data", ic.Config.Volumes)
	}
	if hc := ic.Config.Healthcheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "/co-infuse status") {
		t.Errorf("healthcheck %+v, want /co-infuse status", hc)
	}
	for _, p := range []string{"9050/tcp", "4001/tcp"} {
		if _, ok := ic.Config.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed (%v)", p, ic.Config.ExposedPorts)
		}
	}
	// The container's file system: the binary and the data directory.
	name := "co-infuse-img-" + uniq()
	docker(t, ctx, "create", "--name", name, img)
	t.Cleanup(func() { run(context.Background(), "docker", "rm", "-f", name) })
	dir := t.TempDir()
	docker(t, ctx, "cp", name+":/co-infuse", filepath.Join(dir, "co-infuse"))
	st, err := os.Stat(filepath.Join(dir, "co-infuse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, "docker", "cp", name+":/bin/sh", dir); err == nil {
		t.Error("the image has /bin/sh; the final stage should hold the binary only")
	}
	extra := ic.Size - st.Size()
	t.Logf("image %d bytes, binary %d bytes: the image adds %d bytes", ic.Size, st.Size(), extra)
	if extra > 5<<20 {
		t.Errorf("the image adds %d bytes to the binary, over 5 MiB", extra)
	}
	out := docker(t, ctx, "run", "--rm", img, "version")
	if !strings.HasPrefix(out, "co-infuse ") || strings.TrimPrefix(out, "co-infuse ") == "" {
		t.Errorf("version %q", out)
	}
}

// TestBadInput runs the image with each kind of bad input: the container
// exits with the code for what failed and one line naming the file or
// variable.
func TestBadInput(t *testing.T) {
	img := image(t)
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(badYAML, []byte("roles: [client\nsocks: {"), 0o644); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "tls.cert")
	if err := os.WriteFile(cert, []byte("not a cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"config does not parse",
			[]string{"-v", badYAML + ":/config/config.yaml:ro", "-e", "CO_INFUSE_CONFIG=/config/config.yaml"},
			3, []string{"/config/config.yaml"}},
		{"variable does not parse",
			[]string{"-e", "CO_INFUSE_CIRCUIT_HOPS=three"},
			3, []string{"CO_INFUSE_CIRCUIT_HOPS"}},
		{"macaroon volume missing",
			[]string{"-v", cert + ":/lnd/tls.cert:ro", "-e", "CO_INFUSE_PAYMENTS_ENABLED=true",
				"-e", "CO_INFUSE_LND_HOST=lnd:10009", "-e", "CO_INFUSE_LND_TLSCERTPATH=/lnd/tls.cert",
				"-e", "CO_INFUSE_LND_MACAROONPATH=/lnd/data/chain/bitcoin/mainnet/admin.macaroon"},
			3, []string{"CO_INFUSE_LND_MACAROONPATH", "/lnd/data/chain/bitcoin/mainnet/admin.macaroon"}},
		{"cert volume missing",
			[]string{"-e", "CO_INFUSE_PAYMENTS_ENABLED=true", "-e", "CO_INFUSE_LND_TLSCERTPATH=/lnd/tls.cert",
				"-e", "CO_INFUSE_LND_MACAROONPATH=/lnd/admin.macaroon"},
			3, []string{"CO_INFUSE_LND_TLSCERTPATH", "/lnd/tls.cert"}},
		{"port already taken",
			[]string{"-e", "CO_INFUSE_DISCOVERY_MODE=private", "-e", "CO_INFUSE_SOCKS_LISTEN=0.0.0.0:9050",
				"-e", "CO_INFUSE_HTTPTUNNEL_ENABLED=true", "-e", "CO_INFUSE_HTTPTUNNEL_LISTEN=0.0.0.0:9050"},
			4, []string{"httptunnel.listen", "0.0.0.0:9050"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			name := "co-infuse-bad-" + uniq()
			t.Cleanup(func() { run(context.Background(), "docker", "rm", "-f", name) })
			args := append([]string{"run", "--name", name, "--network", "none"}, tc.args...)
			args = append(args, img, "run")
			_, err := run(ctx, "docker", args...)
			if err == nil {
				t.Fatal("the container exited 0")
			}
			var st struct{ ExitCode int }
			if err := json.Unmarshal([]byte(docker(t, ctx, "inspect", "-f", "{{json .State}}", name)), &st); err != nil {
				t.Fatal(err)
			}
			logs, _ := runCombined(ctx, "docker", "logs", name)
			lines := nonEmptyLines(logs)
			if st.ExitCode != tc.code {
				t.Errorf("exit code %d, want %d; logs:\n%s", st.ExitCode, tc.code, logs)
			}
			if len(lines) == 0 {
				t.Fatal("no reason on stderr")
			}
			last := lines[len(lines)-1]
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("last line %q does not name %q", last, w)
				}
			}
		})
	}
}

// TestHealthcheckUnhealthy: a container whose node is not answering (here:
// the demo web server, which has no admin socket) turns unhealthy through
// the image's own health check instead of hanging in "starting".
func TestHealthcheckUnhealthy(t *testing.T) {
	img := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := "co-infuse-health-" + uniq()
	t.Cleanup(func() { run(context.Background(), "docker", "rm", "-f", name) })
	docker(t, ctx, "run", "-d", "--name", name, "--network", "none",
		"--health-interval", "1s", "--health-retries", "2", "--health-start-period", "0s",
		img, "demo-web", "--listen", "127.0.0.1:8080")
	waitFor(t, ctx, "health unhealthy", func() (bool, error) {
		s, err := run(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", name)
		return s == "unhealthy", err
	})
}

// TestStopIsClean: SIGTERM (docker stop) ends a node within the stop
// timeout with exit code 0 and its shutdown logged.
func TestStopIsClean(t *testing.T) {
	img := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := "co-infuse-stop-" + uniq()
	t.Cleanup(func() { run(context.Background(), "docker", "rm", "-f", name) })
	docker(t, ctx, "run", "-d", "--name", name, "--network", "none",
		"--health-interval", "1s", "-e", "CO_INFUSE_DISCOVERY_MODE=private",
		"-e", "CO_INFUSE_ROLES=relay,exit", img, "run")
	waitFor(t, ctx, "healthy", func() (bool, error) {
		s, err := run(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", name)
		return s == "healthy", err
	})
	docker(t, ctx, "stop", "-t", "10", name)
	code := docker(t, ctx, "inspect", "-f", "{{.State.ExitCode}}", name)
	logs, _ := runCombined(ctx, "docker", "logs", name)
	if code != "0" {
		t.Errorf("exit code %s after SIGTERM, want 0 (137 means killed at the timeout); logs:\n%s", code, logs)
	}
	if !strings.Contains(logs, "stopping") {
		t.Errorf("no shutdown in the logs:\n%s", logs)
	}
}

func runCombined(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test image: built once per test binary by docker/build-image.sh and
// removed after the tests, unless CO_INFUSE_DOCKERTEST_IMAGE names an image
// to use as it is (then nothing is built or removed).
const (
	testImage    = "co-infuse:dockertest"
	builderImage = "co-infuse-builder:local"
)

// built is the test image's build, done once by the first test that needs it.
var built struct {
	once    sync.Once
	image   string
	err     error
	removed bool // whether TestMain must remove image
	took    time.Duration
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.removed {
		exec.Command("docker", "image", "rm", "-f", built.image).Run()
	}
	os.Exit(code)
}

// repoRoot is the module root, two directories up.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// needDocker skips the test, saying why, unless a Docker engine answers and
// a compose command exists; it returns the compose command.
func needDocker(t testing.TB) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("container test: skipped in -short mode")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("container test: no docker command on PATH (scripts/test.sh installs and starts Docker)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("container test: the Docker engine does not answer (%v: %s); scripts/test.sh starts it", err, bytes.TrimSpace(out))
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("container test: neither `docker compose` nor docker-compose is installed")
	return nil
}

// image returns the co-infuse image to test, building it offline the first
// time (docker/build-image.sh: builder base from debootstrap if missing).
func image(t testing.TB) string {
	t.Helper()
	needDocker(t)
	built.once.Do(func() {
		if img := os.Getenv("CO_INFUSE_DOCKERTEST_IMAGE"); img != "" {
			built.image = img
			return
		}
		built.image = testImage
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "docker", "build-image.sh"))
		cmd.Env = append(os.Environ(), "IMAGE="+testImage, "BUILDER_IMAGE="+builderImage)
		out, err := cmd.CombinedOutput()
		built.took = time.Since(start)
		built.removed = true
		if err != nil {
			built.err = fmt.Errorf("docker/build-image.sh: %v\n%s", err, tail(out, 4000))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.image
}

// docker runs the docker command with args and returns its trimmed
// stdout; it fails the test with stderr unless the command succeeds.
func docker(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := run(ctx, "docker", args...)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// run runs name with args; the error carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("%w: %s", err, tail(stderr.Bytes(), 2000))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// uniq is a short random name part, so that tests of parallel runs and
// left-overs of a killed run never collide.
func uniq() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitFor polls cond every 250ms until it reports true or ctx ends; the
// last error cond returned is in the failure.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() (bool, error)) {
	t.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (last error: %v)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

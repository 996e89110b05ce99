package regtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Pinned daemon versions and how lnd is built.
const (
	BtcdVersion = "v0.24.2"
	LndVersion  = "v0.21.1-beta"

	btcdModule = "github.com/btcsuite/btcd"
	lndModule  = "github.com/lightningnetwork/lnd"

	// lndBuildTags are lnd's optional RPC servers we compile in; routerrpc
	// is always built.
	lndBuildTags = "signrpc walletrpc chainrpc invoicesrpc peersrpc"

	stampFile = "VERSIONS"
	lockFile  = ".build.lock"
)

// Bins holds absolute paths of the daemon binaries.
type Bins struct {
	Btcd, Btcctl, Lnd, Lncli string
}

// DefaultCacheDir is where EnsureBinaries keeps binaries when given no
// directory: $COINFUSE_DAEMON_CACHE if set, else
// $XDG_CACHE_HOME/co-infuse/daemons or ~/.cache/co-infuse/daemons.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("COINFUSE_DAEMON_CACHE"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir (set COINFUSE_DAEMON_CACHE): %w", err)
	}
	return filepath.Join(base, "co-infuse", "daemons"), nil
}

func stampContent() string {
	return fmt.Sprintf("btcd %s\nlnd %s tags=%q\n", BtcdVersion, LndVersion, lndBuildTags)
}

func binsIn(dir string) Bins {
	bin := filepath.Join(dir, "bin")
	return Bins{
		Btcd:   filepath.Join(bin, "btcd"),
		Btcctl: filepath.Join(bin, "btcctl"),
		Lnd:    filepath.Join(bin, "lnd"),
		Lncli:  filepath.Join(bin, "lncli"),
	}
}

// haveBinaries reports whether all binaries exist and the stamp file names
// the pinned versions.
func haveBinaries(dir string) bool {
	stamp, err := os.ReadFile(filepath.Join(dir, "bin", stampFile))
	if err != nil || string(stamp) != stampContent() {
		return false
	}
	b := binsIn(dir)
	for _, p := range []string{b.Btcd, b.Btcctl, b.Lnd, b.Lncli} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// EnsureBinaries makes sure btcd, btcctl (BtcdVersion) and lnd, lncli
// (LndVersion) are built in cacheDir/bin and returns their paths. An empty
// cacheDir means DefaultCacheDir. The first call on a machine builds them
// with the Go toolchain (a few minutes for lnd); later calls find the version
// stamp and return at once. Concurrent callers in other processes wait on a
// file lock instead of building twice. Progress lines go to progress, which
// may be nil.
func EnsureBinaries(ctx context.Context, cacheDir string, progress io.Writer) (Bins, error) {
	if progress == nil {
		progress = io.Discard
	}
	cacheDir, err := absCacheDir(cacheDir)
	if err != nil {
		return Bins{}, err
	}
	if haveBinaries(cacheDir) {
		return binsIn(cacheDir), nil
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "bin"), 0o755); err != nil {
		return Bins{}, fmt.Errorf("daemon cache dir: %w", err)
	}
	unlock, err := lockFileWait(ctx, filepath.Join(cacheDir, lockFile), progress)
	if err != nil {
		return Bins{}, err
	}
	defer unlock()
	// Another process may have finished while we waited.
	if haveBinaries(cacheDir) {
		return binsIn(cacheDir), nil
	}
	_ = os.Remove(filepath.Join(cacheDir, "bin", stampFile))

	goBin, err := findGo()
	if err != nil {
		return Bins{}, err
	}
	work, err := os.MkdirTemp("", "co-infuse-daemon-build-")
	if err != nil {
		return Bins{}, fmt.Errorf("build dir: %w", err)
	}
	defer func() {
		// Module copies are read-only no more (see buildLnd), so this works.
		_ = os.RemoveAll(work)
	}()

	start := time.Now()
	fmt.Fprintf(progress, "building btcd %s and btcctl into %s…\n", BtcdVersion, filepath.Join(cacheDir, "bin"))
	if err := runGo(ctx, goBin, work, []string{"GOBIN=" + filepath.Join(cacheDir, "bin")},
		"install", btcdModule+"@"+BtcdVersion, btcdModule+"/cmd/btcctl@"+BtcdVersion); err != nil {
		return Bins{}, fmt.Errorf("build btcd: %w", err)
	}
	fmt.Fprintf(progress, "built btcd in %v\n", time.Since(start).Round(time.Second))

	lndStart := time.Now()
	fmt.Fprintf(progress, "building lnd %s and lncli (about 15 CPU-minutes: 8+ minutes on 2 idle cores, more on a busy machine; once per machine)…\n", LndVersion)
	if err := buildLnd(ctx, goBin, work, filepath.Join(cacheDir, "bin")); err != nil {
		return Bins{}, fmt.Errorf("build lnd: %w", err)
	}
	fmt.Fprintf(progress, "built lnd in %v\n", time.Since(lndStart).Round(time.Second))

	if err := os.WriteFile(filepath.Join(cacheDir, "bin", stampFile), []byte(stampContent()), 0o644); err != nil {
		return Bins{}, fmt.Errorf("write version stamp: %w", err)
	}
	if !haveBinaries(cacheDir) {
		return Bins{}, errors.New("daemon binaries missing after build")
	}
	return binsIn(cacheDir), nil
}

// buildLnd copies the lnd module source out of the module cache (it cannot be
// `go install`ed because its go.mod has replace directives) and builds lnd and
// lncli from that copy with lnd's own dependency versions.
func buildLnd(ctx context.Context, goBin, work, binDir string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", lndModule+"@"+LndVersion)
	cmd.Dir = work
	cmd.Env = goEnv(nil)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go mod download: %w: %s", err, tail(out.String(), 2000))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out.Bytes(), &mod); err != nil {
		return fmt.Errorf("go mod download: bad json: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return fmt.Errorf("go mod download: %s", mod.Error)
	}
	src := filepath.Join(work, "lnd")
	// os.CopyFS creates writable files, unlike the read-only module cache.
	if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
		return fmt.Errorf("copy lnd source: %w", err)
	}
	// Build into temporary names and rename, so a crash never leaves a
	// half-written binary behind under the final name.
	tmpOut := filepath.Join(work, "out")
	if err := runGo(ctx, goBin, src, nil, "build", "-trimpath",
		"-tags="+lndBuildTags, "-o", tmpOut+string(filepath.Separator),
		"./cmd/lnd", "./cmd/lncli"); err != nil {
		return err
	}
	for _, name := range []string{"lnd", "lncli"} {
		if err := moveFile(filepath.Join(tmpOut, name), filepath.Join(binDir, name)); err != nil {
			return err
		}
	}
	return nil
}

// moveFile renames src to dst, copying when they are on different devices.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func findGo() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", errors.New("the go command is needed to build btcd and lnd but is not on PATH")
}

// goEnv returns the environment for go commands run outside our module.
func goEnv(extra []string) []string {
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	return append(env, extra...)
}

func runGo(ctx context.Context, goBin, dir string, extraEnv []string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = goEnv(extraEnv)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, tail(out.String(), 4000))
	}
	return nil
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// EnsureBtcd is EnsureBinaries for callers that need btcd and btcctl only
// (a chain without Lightning): if both are in the cache already at
// BtcdVersion (as `btcd --version` reports it), it returns at once, even
// while another process still builds lnd under the lock; otherwise it
// falls back to EnsureBinaries. Bins.Lnd and Bins.Lncli may not exist.
func EnsureBtcd(ctx context.Context, cacheDir string, progress io.Writer) (Bins, error) {
	cacheDir, err := absCacheDir(cacheDir)
	if err != nil {
		return Bins{}, err
	}
	b := binsIn(cacheDir)
	if fi, err := os.Stat(b.Btcctl); err == nil && fi.Mode().IsRegular() {
		out, err := exec.CommandContext(ctx, b.Btcd, "--version").Output()
		if err == nil && strings.Contains(string(out), strings.TrimPrefix(BtcdVersion, "v")) {
			return b, nil
		}
	}
	return EnsureBinaries(ctx, cacheDir, progress)
}

// absCacheDir is cacheDir made absolute, or DefaultCacheDir when empty.
func absCacheDir(cacheDir string) (string, error) {
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		cacheDir = d
	}
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("daemon cache dir: %w", err)
	}
	return abs, nil
}

package dockertest

import (
	"bufio"
	"encoding/json"
	"fmt"
	stdimage "image"
	_ "image/png"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/co-infuse/co-infuse/node"
)

// dockerfile is what the final stage of docker/Dockerfile declares.
type dockerfile struct {
	user       string
	volumes    []string
	exposed    []string // "9050/tcp"
	entrypoint []string
}

// readDockerfile reads the final stage (after the last FROM) of
// docker/Dockerfile: USER, VOLUME, EXPOSE and ENTRYPOINT.
func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	cont := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	var d dockerfile
	for _, l := range lines {
		kw, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "FROM":
			d = dockerfile{}
		case "USER":
			d.user = rest
		case "VOLUME":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				v = strings.Fields(rest)
			}
			d.volumes = append(d.volumes, v...)
		case "EXPOSE":
			d.exposed = append(d.exposed, strings.Fields(rest)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %q is not exec form: %v", rest, err)
			}
		}
	}
	if d.user == "" || len(d.volumes) == 0 || len(d.exposed) == 0 || len(d.entrypoint) == 0 {
		t.Fatalf("Dockerfile's final stage lacks USER, VOLUME, EXPOSE or ENTRYPOINT: %+v", d)
	}
	return d
}

func (d dockerfile) exposes(port string) bool {
	if !strings.Contains(port, "/") {
		port += "/tcp"
	}
	return slices.Contains(d.exposed, port)
}

// envNames is every variable node.EnvVars lists.
func envNames() map[string]bool {
	m := map[string]bool{}
	for _, e := range node.EnvVars() {
		m[e.Name] = true
	}
	return m
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// requireKeys fails for every dotted key of keys missing or empty in m.
func requireKeys(t *testing.T, file string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		var cur any = m
		for _, part := range strings.Split(k, ".") {
			mm, ok := cur.(map[string]any)
			if !ok {
				cur = nil
				break
			}
			cur = mm[part]
		}
		if cur == nil || cur == "" {
			t.Errorf("%s: required field %s is missing or empty", file, k)
		}
	}
}

// substitute replaces ${VAR}, ${VAR:-default} and ${VAR-default} with vars[VAR] or
// the default.
func substitute(s string, vars map[string]string) string {
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)
	return re.ReplaceAllStringFunc(s, func(m string) string {
		sub := re.FindStringSubmatch(m)
		if v, ok := vars[sub[1]]; ok && v != "" {
			return v
		}
		return sub[3]
	})
}

// checkComposeEnv checks that every CO_INFUSE_ variable of a compose
// service is one the node reads, and that together they make a valid
// config; it returns that config.
func checkComposeEnv(t *testing.T, file, service string, env map[string]string, vars map[string]string) node.Config {
	t.Helper()
	known := envNames()
	resolved := map[string]string{}
	for k, v := range env {
		if !strings.HasPrefix(k, node.EnvPrefix) {
			continue
		}
		if !known[k] {
			t.Errorf("%s: service %s sets %s, which the node does not read (node/env.go)", file, service, k)
		}
		resolved[k] = substitute(v, vars)
	}
	c := node.Config{DataDir: "/data"}
	if _, ok := resolved[node.EnvConfig]; !ok {
		c.Discovery.Mode = "ipfs" // as LoadConfigEnv starts a config from variables alone
	}
	if _, err := c.ApplyEnv(func(k string) (string, bool) { v, ok := resolved[k]; return v, ok }); err != nil {
		t.Errorf("%s: service %s: %v", file, service, err)
		return c
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("%s: service %s: %v", file, service, err)
	}
	return c
}

func portOf(t *testing.T, hostPort string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%q: %v", hostPort, err)
	}
	return p
}

// TestUmbrelPackage checks docker/umbrel: the manifest's required fields,
// and that the compose file's image user, ports, volumes and variables
// match the Dockerfile and the config.
func TestUmbrelPackage(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "docker", "umbrel")
	df := readDockerfile(t)
	var app map[string]any
	readYAML(t, filepath.Join(dir, "umbrel-app.yml"), &app)
	requireKeys(t, "umbrel-app.yml", app, "manifestVersion", "id", "category", "name", "version",
		"tagline", "description", "developer", "website", "dependencies", "repo", "support", "port", "submitter")
	id, _ := app["id"].(string)
	if !regexp.MustCompile(`^[a-z0-9-]{1,64}$`).MatchString(id) {
		t.Errorf("umbrel-app.yml: id %q is not lower case letters, digits and dashes", id)
	}
	for _, dep := range []string{"bitcoin", "lightning"} {
		if !slices.Contains(app["dependencies"].([]any), any(dep)) {
			t.Errorf("umbrel-app.yml: dependencies lack %s", dep)
		}
	}

	var cf struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			User        string            `yaml:"user"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(dir, "docker-compose.yml"), &cf)
	proxy, ok := cf.Services["app_proxy"]
	if !ok {
		t.Fatal("docker-compose.yml: no app_proxy service")
	}
	svcName, ok := strings.CutPrefix(proxy.Environment["APP_HOST"], id+"_")
	svcName, ok2 := strings.CutSuffix(svcName, "_1")
	svc, ok3 := cf.Services[svcName]
	if !ok || !ok2 || !ok3 {
		t.Fatalf("app_proxy's APP_HOST %q is not %s_<service>_1 of a service in the file", proxy.Environment["APP_HOST"], id)
	}
	if !strings.HasPrefix(svc.Image, "co-infuse/co-infuse:") {
		t.Errorf("service %s: image %q is not the co-infuse image", svcName, svc.Image)
	}
	if svc.User != "" && svc.User != df.user {
		t.Errorf("service %s: user %s, the image runs as %s", svcName, svc.User, df.user)
	}
	umbrelVars := map[string]string{
		"APP_DATA_DIR": "/umbrel/app-data/co-infuse", "APP_BITCOIN_NETWORK": "mainnet",
		"APP_LIGHTNING_NODE_IP": "10.21.21.9", "APP_LIGHTNING_NODE_GRPC_PORT": "10009",
		"APP_LIGHTNING_NODE_DATA_DIR": "/umbrel/app-data/lightning/data/lnd",
	}
	cfg := checkComposeEnv(t, "docker-compose.yml", svcName, svc.Environment, umbrelVars)
	for k, v := range svc.Environment {
		for _, ref := range regexp.MustCompile(`\$\{([A-Z_]+)`).FindAllStringSubmatch(v, -1) {
			if _, ok := umbrelVars[ref[1]]; !ok {
				t.Errorf("%s refers to ${%s}, which Umbrel does not export", k, ref[1])
			}
		}
	}
	// APP_PORT is a port the node serves and the image exposes.
	port := proxy.Environment["APP_PORT"]
	if !df.exposes(port) || (portOf(t, cfg.HTTP.Listen) != port && portOf(t, cfg.SOCKS.Listen) != port) {
		t.Errorf("APP_PORT %s is not a port the node listens on (%s, %s) and the image exposes (%v)", port, cfg.SOCKS.Listen, cfg.HTTP.Listen, df.exposed)
	}
	for _, p := range svc.Ports {
		parts := strings.Split(p, ":")
		if !df.exposes(parts[len(parts)-1]) {
			t.Errorf("published port %s is not exposed by the image (%v)", p, df.exposed)
		}
	}
	// Volumes: the data volume, and LND's files at the paths the config names.
	mounted := map[string]bool{}
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("volume %q has no container path", v)
			continue
		}
		mounted[parts[1]] = true
	}
	for _, want := range append(slices.Clone(df.volumes), cfg.LND.TLSCertPath, cfg.LND.MacaroonPath) {
		if !mounted[want] {
			t.Errorf("service %s does not mount %s (mounted: %v)", svcName, want, mounted)
		}
	}
}

// TestStart9Package checks docker/start9: the manifest's required fields,
// that its mounts, image command and interfaces match the Dockerfile, and
// that the config spec's defaults are a config.yaml the node accepts.
func TestStart9Package(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "docker", "start9")
	df := readDockerfile(t)
	var m map[string]any
	readYAML(t, filepath.Join(dir, "manifest.yaml"), &m)
	requireKeys(t, "manifest.yaml", m, "id", "title", "version", "release-notes", "license",
		"wrapper-repo", "upstream-repo", "build", "description.short", "description.long",
		"assets.license", "assets.icon", "assets.instructions",
		"main.type", "main.image", "main.entrypoint", "main.mounts",
		"health-checks", "config.get", "config.set", "volumes", "interfaces",
		"dependencies", "backup.create", "backup.restore", "migrations")
	if t.Failed() {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, m["assets"].(map[string]any)["instructions"].(string))); err != nil {
		t.Errorf("assets.instructions: %v", err)
	}
	// The icon StartOS shows: a square PNG (StartOS asks for 512x512 or
	// more). LICENSE is left to the maintainers: the Makefile writes one
	// saying no license is granted until the repository has one.
	if f, err := os.Open(filepath.Join(dir, m["assets"].(map[string]any)["icon"].(string))); err != nil {
		t.Errorf("assets.icon: %v", err)
	} else {
		cfg, format, err := stdimage.DecodeConfig(f)
		f.Close()
		if err != nil || format != "png" || cfg.Width != cfg.Height || cfg.Width < 512 {
			t.Errorf("assets.icon: want a square PNG of at least 512x512, got %s %dx%d (%v)", format, cfg.Width, cfg.Height, err)
		}
	}
	volumes := m["volumes"].(map[string]any)
	main := m["main"].(map[string]any)
	if ep := main["entrypoint"]; ep != df.entrypoint[0] {
		t.Errorf("main.entrypoint %v, the image's is %v", ep, df.entrypoint)
	}
	mounts := main["mounts"].(map[string]any)
	for vol, path := range mounts {
		if _, ok := volumes[vol]; !ok {
			t.Errorf("main.mounts names volume %s, not in volumes", vol)
		}
		_ = path
	}
	if mounts["main"] != df.volumes[0] {
		t.Errorf("main volume mounted at %v, the image's data volume is %v", mounts["main"], df.volumes)
	}
	for name, hc := range m["health-checks"].(map[string]any) {
		h := hc.(map[string]any)
		args := fmt.Sprint(h["args"])
		if h["image"] != "main" || h["entrypoint"] != df.entrypoint[0] || !strings.HasPrefix(args, "[status") {
			t.Errorf("health check %s is not `co-infuse status` in the main image: %v", name, h)
		}
	}
	for name, iface := range m["interfaces"].(map[string]any) {
		tc, _ := iface.(map[string]any)["tor-config"].(map[string]any)
		var pm map[any]any // YAML keys are port numbers
		switch x := tc["port-mapping"].(type) {
		case map[any]any:
			pm = x
		case map[string]any:
			pm = map[any]any{}
			for k, v := range x {
				pm[k] = v
			}
		}
		if len(pm) == 0 {
			t.Errorf("interface %s maps no port", name)
		}
		for _, internal := range pm {
			if !df.exposes(fmt.Sprint(internal)) {
				t.Errorf("interface %s maps to port %v, which the image does not expose (%v)", name, internal, df.exposed)
			}
		}
	}
	if _, ok := m["dependencies"].(map[string]any)["lnd"]; !ok {
		t.Error("dependencies lack lnd")
	}
	// The config spec's defaults, as StartOS writes them, parse as the
	// node's config.yaml; LND's files are under the lnd mount.
	var spec map[string]any
	readYAML(t, filepath.Join(dir, "config_spec.yaml"), &spec)
	raw, err := yaml.Marshal(specDefaults(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.ParseConfig("/data", raw)
	if err != nil {
		t.Fatalf("config_spec.yaml's defaults are not a config the node accepts: %v\n%s", err, raw)
	}
	lndMount, _ := mounts["lnd"].(string)
	for _, p := range []string{cfg.LND.TLSCertPath, cfg.LND.MacaroonPath} {
		if lndMount == "" || !strings.HasPrefix(p, lndMount+"/") {
			t.Errorf("LND file %s is not under the lnd mount %q", p, lndMount)
		}
	}
	args := fmt.Sprint(main["args"])
	if !strings.Contains(args, "--config") {
		t.Errorf("main.args %s do not point the node at StartOS's config", args)
	}
}

// specDefaults turns a StartOS config spec into the YAML StartOS writes for
// its defaults: objects become maps of their spec's defaults.
func specDefaults(t *testing.T, spec map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range spec {
		f, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("config spec: %s is not a field", k)
		}
		switch f["type"] {
		case "object":
			sub, _ := f["spec"].(map[string]any)
			out[k] = specDefaults(t, sub)
		default:
			d, ok := f["default"]
			if !ok {
				t.Errorf("config spec: %s has no default", k)
			}
			out[k] = d
		}
	}
	return out
}

// TestComposeFiles checks the compose files' CO_INFUSE_ variables and
// ports against the node and the Dockerfile.
func TestComposeFiles(t *testing.T) {
	t.Parallel()
	df := readDockerfile(t)
	for _, name := range []string{"compose.sidecar.yml", "compose.devnet.yml"} {
		var cf composeFile
		readYAML(t, filepath.Join(repoRoot(t), "docker", name), &cf)
		n := 0
		for svc, s := range cf.Services {
			if !strings.Contains(s.Image, "CO_INFUSE_IMAGE") {
				continue
			}
			n++
			if s.Environment != nil && s.Environment["CO_INFUSE_ROLES"] != "" {
				checkComposeEnv(t, name, svc, s.Environment, nil)
			}
			for _, p := range s.Ports {
				parts := strings.Split(p, ":")
				if !df.exposes(parts[len(parts)-1]) {
					t.Errorf("%s: %s publishes %s, which the image does not expose", name, svc, p)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s runs no co-infuse service", name)
		}
	}
}

// TestComposeLightning checks compose.lightning.yml against
// compose.devnet.yml, which it is layered over: every service it changes
// exists there, and every CO_INFUSE_ variable it sets is one the node
// reads.
func TestComposeLightning(t *testing.T) {
	t.Parallel()
	var base, over composeFile
	readYAML(t, filepath.Join(repoRoot(t), "docker", "compose.devnet.yml"), &base)
	readYAML(t, filepath.Join(repoRoot(t), "docker", "compose.lightning.yml"), &over)
	known := envNames()
	for svc, s := range over.Services {
		if _, ok := base.Services[svc]; !ok {
			t.Errorf("compose.lightning.yml: service %s is not in compose.devnet.yml", svc)
		}
		if s.Environment["CO_INFUSE_PAYMENTS_ENABLED"] != "true" || s.Environment["CO_INFUSE_LND_MACAROONPATH"] == "" {
			t.Errorf("compose.lightning.yml: %s does not turn payments on with an LND macaroon", svc)
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, node.EnvPrefix) && !known[k] {
				t.Errorf("compose.lightning.yml: %s sets %s, which the node does not read (node/env.go)", svc, k)
			}
		}
	}
	for svc, s := range base.Services {
		if s.Environment["CO_INFUSE_ROLES"] != "" {
			if _, ok := over.Services[svc]; !ok {
				t.Errorf("compose.lightning.yml leaves %s without payments", svc)
			}
		}
	}
}

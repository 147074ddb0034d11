package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/topo"
	"go.yaml.in/yaml/v3"
)

// xskCaps are the capabilities of a zerohop server on the AF_XDP backend,
// without the CAP_ prefix: every recipe grants exactly these
// (TestCapabilitiesAreExactlyNeeded measures that each is needed and that
// together they suffice).
var xskCaps = []string{"BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW", "PERFMON"}

const unitPath = "systemd/zerohop@.service"

// buildZerohop builds the CLI into t's temp dir.
func buildZerohop(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zerohop")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/zerohop").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// requireTool returns the path of tool; it skips without it, except under
// scripts/test (CI), which installs it (package pkg): see topo.SkipMissing.
func requireTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		topo.SkipMissing(t, "needs %s (apt-get install %s; scripts/test does)", tool, pkg)
	}
	return p
}

// unit parses a systemd unit into section → key → values (keys repeat).
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", path, i+1, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func capList(s string, prefix string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		out = append(out, strings.TrimPrefix(f, prefix))
	}
	sort.Strings(out)
	return out
}

func TestSystemdUnit(t *testing.T) {
	u := unit(t, unitPath)
	svc := u["Service"]
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := capList(strings.Join(svc[key], " "), "CAP_"); !slices.Equal(got, xskCaps) {
			t.Errorf("%s = %v, want exactly %v", key, got, xskCaps)
		}
	}
	if svc["NoNewPrivileges"][0] != "yes" || svc["DynamicUser"][0] != "yes" || svc["KillSignal"][0] != "SIGTERM" {
		t.Errorf("[Service] %v: want NoNewPrivileges, DynamicUser and KillSignal=SIGTERM", svc)
	}
	if !strings.Contains(svc["RestrictAddressFamilies"][0], "AF_XDP") || !strings.Contains(svc["RestrictAddressFamilies"][0], "AF_NETLINK") {
		t.Errorf("RestrictAddressFamilies %v lacks AF_XDP or AF_NETLINK", svc["RestrictAddressFamilies"])
	}
	if len(u["Install"]["WantedBy"]) == 0 || len(u["Unit"]["Description"]) == 0 {
		t.Error("unit lacks [Install] WantedBy or [Unit] Description")
	}
	// ExecStart runs flags that `zerohop serve` has.
	exec0 := svc["ExecStart"][0]
	if !strings.HasPrefix(exec0, "/usr/local/bin/zerohop serve ") {
		t.Fatalf("ExecStart %q", exec0)
	}
	help := serveHelp(t, buildZerohop(t))
	for _, f := range regexp.MustCompile(`--[a-z-]+`).FindAllString(exec0, -1) {
		if !strings.Contains(help, "  -"+strings.TrimLeft(f, "-")+" ") {
			t.Errorf("ExecStart uses %s, which zerohop serve does not have", f)
		}
	}
}

func serveHelp(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "serve", "-h").Output()
	if err != nil {
		t.Fatalf("zerohop serve -h: %v", err)
	}
	return string(out)
}

// systemd-analyze verify checks the unit as systemd would load it (an
// instance of the template, ExecStart pointing at a real binary); any
// complaint fails, since verify exits 0 on some.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := buildZerohop(t)
	text := strings.ReplaceAll(string(data), "/usr/local/bin/zerohop", bin)
	if err := os.WriteFile(filepath.Join(dir, "zerohop@.service"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "zerohop@test.service")).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// manifests parses every document of the Kubernetes YAML files.
func manifests(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no kubernetes/*.yaml")
	}
	objs := map[string]map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if err.Error() == "EOF" {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			kind, _ := obj["kind"].(string)
			name, _ := get(obj, "metadata", "name").(string)
			if kind == "" || name == "" || obj["apiVersion"] == nil {
				t.Errorf("%s: an object without apiVersion, kind or metadata.name: %v", f, obj)
			}
			objs[kind+"/"+name] = obj
		}
	}
	return objs
}

// get walks maps and lists ("0" indexes a list).
func get(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	sort.Strings(out)
	return out
}

func TestKubernetesManifests(t *testing.T) {
	objs := manifests(t)
	d, s := objs["Deployment/echo"], objs["Service/echo"]
	if d == nil || s == nil {
		t.Fatalf("want Deployment/echo and Service/echo, have %v", keys(objs))
	}
	if get(d, "apiVersion") != "apps/v1" || get(s, "apiVersion") != "v1" {
		t.Errorf("apiVersions %v, %v", get(d, "apiVersion"), get(s, "apiVersion"))
	}
	c := get(d, "spec", "template", "spec", "containers", "0")
	sc := get(c, "securityContext")
	if got := strs(get(sc, "capabilities", "add")); !slices.Equal(got, xskCaps) {
		t.Errorf("capabilities.add = %v, want exactly %v", got, xskCaps)
	}
	if got := strs(get(sc, "capabilities", "drop")); !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", got)
	}
	if get(sc, "allowPrivilegeEscalation") != false || get(c, "image") == nil {
		t.Errorf("container %v: want an image and allowPrivilegeEscalation false", c)
	}
	// The selector selects the template; the Service selects the pods.
	tmplLabels := get(d, "spec", "template", "metadata", "labels").(map[string]any)
	for _, sel := range []any{get(d, "spec", "selector", "matchLabels"), get(s, "spec", "selector")} {
		m, ok := sel.(map[string]any)
		if !ok || len(m) == 0 {
			t.Fatalf("empty selector %v", sel)
		}
		for k, v := range m {
			if tmplLabels[k] != v {
				t.Errorf("selector %s=%v does not match the pod template's labels %v", k, v, tmplLabels)
			}
		}
	}
	// Every Service port is named and targets a named container port of the
	// same protocol; "gwir" (UDP) is the one callers pick.
	cports := map[string]string{}
	for _, p := range get(c, "ports").([]any) {
		cports[fmt.Sprint(get(p, "name"))] = fmt.Sprint(get(p, "protocol"))
	}
	var names []string
	for _, p := range get(s, "spec", "ports").([]any) {
		name, target, proto := fmt.Sprint(get(p, "name")), fmt.Sprint(get(p, "targetPort")), fmt.Sprint(get(p, "protocol"))
		names = append(names, name)
		if cports[target] != proto {
			t.Errorf("Service port %s targets %s/%s, not a container port (%v)", name, target, proto, cports)
		}
	}
	if !slices.Contains(names, "gwir") || cports["gwir"] != "UDP" {
		t.Errorf("Service ports %v: want one named gwir over UDP", names)
	}
	if get(s, "spec", "clusterIP") != "None" {
		t.Errorf("Service clusterIP %v: want None (headless: callers use the EndpointSlices)", get(s, "spec", "clusterIP"))
	}
	// The container's args are flags zerohop serve has.
	help := serveHelp(t, buildZerohop(t))
	for _, a := range strs(get(c, "args")) {
		if strings.HasPrefix(a, "--") && !strings.Contains(help, "  -"+strings.TrimLeft(a, "-")+" ") {
			t.Errorf("container arg %s is not a zerohop serve flag", a)
		}
	}
	// The resolver's RBAC reads endpointslices.
	rule := get(objs["Role/zerohop-resolver"], "rules", "0")
	if !slices.Contains(strs(get(rule, "resources")), "endpointslices") || !slices.Equal(strs(get(rule, "verbs")), []string{"get", "list", "watch"}) {
		t.Errorf("Role/zerohop-resolver rule %v", rule)
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// kubectl's client-side dry run still asks an API server which kinds
// exist: a loopback server answers those discovery requests (and nothing
// else), so kubectl can decode and default every object offline.
func TestKubectlDryRun(t *testing.T) {
	kubectl := requireTool(t, "kubectl", "kubernetes-client")
	api := httptest.NewServer(http.HandlerFunc(discovery))
	defer api.Close()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	var got []string
	for _, f := range files {
		cmd := exec.Command(kubectl, "create", "--dry-run=client", "--validate=false", "-o", "name",
			"--server", api.URL, "--kubeconfig", os.DevNull, "-f", f)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+os.DevNull, "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("kubectl create --dry-run=client -f %s: %v\n%s", f, err, out)
			continue
		}
		got = append(got, strings.Fields(string(out))...)
	}
	sort.Strings(got)
	want := []string{"deployment.apps/echo", "role.rbac.authorization.k8s.io/zerohop-resolver",
		"rolebinding.rbac.authorization.k8s.io/zerohop-resolver", "service/echo", "serviceaccount/zerohop-resolver"}
	if !slices.Equal(got, want) {
		t.Errorf("kubectl created %v, want %v", got, want)
	}
}

// discovery answers the legacy discovery endpoints for the kinds the
// manifests use.
func discovery(w http.ResponseWriter, r *http.Request) {
	res := func(name, kind string, namespaced bool) map[string]any {
		return map[string]any{"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
			"verbs": []string{"create", "delete", "get", "list", "patch", "update", "watch"}}
	}
	group := func(name, version string) map[string]any {
		gv := map[string]string{"groupVersion": name + "/" + version, "version": version}
		return map[string]any{"name": name, "versions": []any{gv}, "preferredVersion": gv}
	}
	var body any
	switch r.URL.Path {
	case "/api":
		body = map[string]any{"kind": "APIVersions", "versions": []string{"v1"}, "serverAddressByClientCIDRs": []any{}}
	case "/apis":
		body = map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{group("apps", "v1"), group("rbac.authorization.k8s.io", "v1")}}
	case "/api/v1":
		body = map[string]any{"kind": "APIResourceList", "groupVersion": "v1", "resources": []any{
			res("services", "Service", true), res("serviceaccounts", "ServiceAccount", true), res("namespaces", "Namespace", false)}}
	case "/apis/apps/v1":
		body = map[string]any{"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": []any{res("deployments", "Deployment", true)}}
	case "/apis/rbac.authorization.k8s.io/v1":
		body = map[string]any{"kind": "APIResourceList", "groupVersion": "rbac.authorization.k8s.io/v1", "resources": []any{
			res("roles", "Role", true), res("rolebindings", "RoleBinding", true)}}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

// The Containerfile builds the CLI from this repository and runs it with
// flags it has.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile("container/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	var entrypoint, cmd []string
	built := ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch instr {
		case "FROM":
			f := strings.Fields(rest)
			stages = append(stages, f[len(f)-1])
		case "RUN":
			if m := regexp.MustCompile(`go build .* (\./cmd/\S+)`).FindStringSubmatch(rest); m != nil {
				built = m[1]
			}
		case "COPY":
			if from, ok := strings.CutPrefix(rest, "--from="); ok {
				if name, _, _ := strings.Cut(from, " "); !slices.Contains(stages, name) {
					t.Errorf("COPY --from=%s: no such stage (have %v)", name, stages)
				}
			}
		case "ENTRYPOINT", "CMD":
			var args []string
			if err := json.Unmarshal([]byte(rest), &args); err != nil {
				t.Errorf("%s %s: want the JSON (exec) form: %v", instr, rest, err)
			}
			if instr == "ENTRYPOINT" {
				entrypoint = args
			} else {
				cmd = args
			}
		}
	}
	if len(stages) != 2 || built == "" {
		t.Fatalf("stages %v, go build of %q: want a build stage and a runtime stage building ./cmd/zerohop", stages, built)
	}
	if st, err := os.Stat(filepath.Join("..", built)); err != nil || !st.IsDir() {
		t.Errorf("the Containerfile builds %s, which does not exist", built)
	}
	if len(entrypoint) != 1 || entrypoint[0] != "/usr/local/bin/zerohop" || len(cmd) == 0 || cmd[0] != "serve" {
		t.Errorf("ENTRYPOINT %v CMD %v", entrypoint, cmd)
	}
	help := serveHelp(t, buildZerohop(t))
	for _, a := range cmd[1:] {
		if strings.HasPrefix(a, "--") && !strings.Contains(help, "  -"+strings.TrimLeft(a, "-")+" ") {
			t.Errorf("CMD passes %s, which zerohop serve does not have", a)
		}
	}
	if !strings.Contains(string(data), "--cap-add "+strings.Join([]string{"NET_ADMIN", "BPF", "PERFMON", "NET_RAW", "IPC_LOCK"}, ",")) {
		t.Error("the Containerfile's run example does not add exactly the capabilities of xskCaps")
	}
}

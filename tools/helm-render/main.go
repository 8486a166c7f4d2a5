// helm-render renders a Helm chart the way `helm template` does, with the
// template engine Helm itself is built on: Go's text/template, the sprig
// function library, and the handful of functions Helm adds (include, tpl,
// required, toYaml, fromYaml, toJson, fromJson, lookup). No helm binary can be
// installed on the machines this project is developed and tested on, and this
// keeps the chart honest without one: the same parser, the same functions,
// the same missing-key behaviour.
//
// It is built offline from Debian's Go source packages (golang-go,
// golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helm-render ./tools/helm-render
//
// Usage:
//
//	helm-render [-f values.yaml]... [-name R] [-namespace NS] [-api-versions G/V]...
//	            [-include-crds] [-notes] [-values-out FILE] [-kustomize DIR] CHART
//
// -cluster FILE makes lookup find the objects in FILE, as `helm upgrade`
// against a cluster would; without it lookup finds nothing, as in
// `helm template`. -kustomize DIR writes a kustomize base instead (deploy/).
//
// Not implemented (the chart does not use them): subcharts, .Files other than
// .Files.Get, toToml, --set.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	chartDir       string
	valueFiles     multiFlag
	apiVersions    multiFlag
	releaseName    string
	namespace      string
	releaseService string
	kubeVersion    string
	isUpgrade      bool
	includeCRDs    bool
	notes          bool
	valuesOut      string
	kustomizeDir   string
	clusterFile    string
}

func main() {
	var o options
	flag.Var(&o.valueFiles, "f", "values file (repeatable; later files win)")
	flag.Var(&o.apiVersions, "api-versions", "extra API group/version for .Capabilities.APIVersions (repeatable)")
	flag.StringVar(&o.releaseName, "name", "podtap", "release name")
	flag.StringVar(&o.namespace, "namespace", "podtap-system", "release namespace")
	flag.StringVar(&o.releaseService, "release-service", "Helm", ".Release.Service")
	flag.StringVar(&o.kubeVersion, "kube-version", "v1.30.0", ".Capabilities.KubeVersion")
	flag.BoolVar(&o.isUpgrade, "is-upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	flag.BoolVar(&o.includeCRDs, "include-crds", false, "prepend the chart's crds/ files")
	flag.BoolVar(&o.notes, "notes", false, "print the rendered NOTES.txt instead of the manifests")
	flag.StringVar(&o.valuesOut, "values-out", "", "write the merged values as JSON to this file")
	flag.StringVar(&o.kustomizeDir, "kustomize", "", "write a kustomize base (manifests, CRDs, namespace, kustomization.yaml) into this directory")
	flag.StringVar(&o.clusterFile, "cluster", "", "YAML objects that lookup finds, as on a cluster (an upgrade); default: none, as in helm template")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [flags] CHART_DIR")
		os.Exit(2)
	}
	o.chartDir = flag.Arg(0)
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "helm-render: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	chart, err := readYAMLMap(filepath.Join(o.chartDir, "Chart.yaml"))
	if err != nil {
		return fmt.Errorf("Chart.yaml: %w", err)
	}
	values, err := readYAMLMap(filepath.Join(o.chartDir, "values.yaml"))
	if err != nil {
		return fmt.Errorf("values.yaml: %w", err)
	}
	for _, f := range o.valueFiles {
		override, err := readYAMLMap(f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		values = coalesce(override, values)
	}
	if o.kustomizeDir != "" {
		values = coalesce(kustomizeValues(), values)
		if o.releaseService == "Helm" {
			o.releaseService = "kustomize"
		}
	}
	if o.valuesOut != "" {
		b, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.valuesOut, b, 0o644); err != nil {
			return err
		}
	}
	top, err := topLevel(o, chart, values)
	if err != nil {
		return err
	}
	cluster, err := readCluster(o.clusterFile)
	if err != nil {
		return err
	}
	files, notes, err := render(o.chartDir, chartName(chart), top, cluster)
	if err != nil {
		return err
	}
	if o.notes {
		fmt.Print(notes)
		return nil
	}
	docs := manifests(files)
	var crds []document
	if o.includeCRDs || o.kustomizeDir != "" {
		if crds, err = readCRDs(o.chartDir); err != nil {
			return err
		}
	}
	if o.kustomizeDir != "" {
		return writeKustomize(o, docs, crds)
	}
	var out bytes.Buffer
	for _, d := range append(crds, docs...) {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", d.source, d.body)
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func chartName(chart map[string]interface{}) string {
	name, _ := chart["name"].(string)
	return name
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// coalesce merges src (the user's values) over dst (the defaults) as Helm
// does: maps merge key by key, anything else is replaced, and a null removes
// the default.
func coalesce(src, dst map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if v == nil {
			delete(out, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if sok && dok {
			out[k] = coalesce(sm, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

// topLevel is the dot of every template: .Values, .Release, .Chart, .Capabilities.
func topLevel(o options, chart, values map[string]interface{}) (map[string]interface{}, error) {
	ver := strings.TrimPrefix(o.kubeVersion, "v")
	parts := strings.SplitN(ver, ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("-kube-version %q: want vMAJOR.MINOR.PATCH", o.kubeVersion)
	}
	apiVersions := apiVersionSet(append(builtinAPIVersions(), o.apiVersions...))
	return map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name":      o.releaseName,
			"Namespace": o.namespace,
			"Service":   o.releaseService,
			"IsInstall": !o.isUpgrade,
			"IsUpgrade": o.isUpgrade,
			"Revision":  1,
		},
		"Chart": helmChart(chart),
		"Files": chartFiles{dir: o.chartDir},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v" + ver, "GitVersion": "v" + ver, "Major": parts[0], "Minor": parts[1],
			},
			"APIVersions": apiVersions,
		},
	}, nil
}

// chartFiles is Helm's .Files as far as the chart uses it: Get returns a
// file of the chart by its path inside the chart, "" when there is none.
type chartFiles struct{ dir string }

func (f chartFiles) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.Clean("/"+name)))
	if err != nil {
		return ""
	}
	return string(b)
}

// helmChart exposes Chart.yaml with Helm's capitalised field names.
func helmChart(chart map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range chart {
		if k == "" {
			continue
		}
		name := strings.ToUpper(k[:1]) + k[1:]
		if k == "apiVersion" {
			name = "APIVersion"
		}
		out[name] = v
	}
	return out
}

// apiVersionSet mimics chartutil.VersionSet: .Capabilities.APIVersions.Has "g/v" or "g/v/Kind".
type apiVersionSet []string

func (s apiVersionSet) Has(v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func builtinAPIVersions() []string {
	return []string{
		"v1", "apps/v1", "batch/v1", "policy/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1",
		"scheduling.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1", "storage.k8s.io/v1",
		"apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1", "events.k8s.io/v1",
	}
}

type renderedFile struct {
	name string
	text string
}

// render parses every file under templates/ into one template set (so
// `define`s are shared) and executes the ones that are not partials.
func render(chartDir, chartName string, top map[string]interface{}, cluster []map[string]interface{}) ([]renderedFile, string, error) {
	root := template.New("gotpl")
	root.Option("missingkey=zero")
	funcs := funcMap(root, cluster)
	root.Funcs(funcs)
	var names []string
	base := filepath.Join(chartDir, "templates")
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		name := path.Join(chartName, filepath.ToSlash(rel))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := root.New(name).Parse(string(b)); err != nil {
			return err
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Strings(names)
	var files []renderedFile
	notes := ""
	for _, name := range names {
		baseName := path.Base(name)
		if strings.HasPrefix(baseName, "_") {
			continue
		}
		dot := map[string]interface{}{}
		for k, v := range top {
			dot[k] = v
		}
		dot["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, dot); err != nil {
			return nil, "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if baseName == "NOTES.txt" {
			notes = text
			continue
		}
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") && !strings.HasSuffix(name, ".tpl") {
			continue
		}
		files = append(files, renderedFile{name: name, text: text})
	}
	return files, notes, nil
}

// funcMap is sprig's functions plus Helm's own, as in helm's engine/funcs.go
// (written here from Helm's documentation of each function).
func funcMap(root *template.Template, cluster []map[string]interface{}) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	includeDepth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if includeDepth[name] > 1000 {
			return "", fmt.Errorf("include %q: too deep (recursion?)", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	f["toYaml"] = func(v interface{}) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		var a []interface{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// `helm template` has no cluster: lookup finds nothing, unless -cluster
	// gave it objects. A name of "" lists, as Helm's lookup does.
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		var items []interface{}
		for _, obj := range cluster {
			meta, _ := obj["metadata"].(map[string]interface{})
			if obj["apiVersion"] != apiVersion || obj["kind"] != kind || (namespace != "" && meta["namespace"] != namespace) {
				continue
			}
			if name == "" {
				items = append(items, obj)
			} else if meta["name"] == name {
				return obj, nil
			}
		}
		if name == "" && len(items) > 0 {
			return map[string]interface{}{"items": items}, nil
		}
		return map[string]interface{}{}, nil
	}
	return f
}

type document struct {
	hook   bool
	source string
	kind   string
	name   string
	body   string
}

// manifests splits rendered files into YAML documents, drops empty ones and
// orders them the way Helm installs them (namespaces and RBAC before workloads).
func manifests(files []renderedFile) []document {
	var docs []document
	for _, f := range files {
		for _, part := range splitDocs(f.text) {
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name        string            `json:"name"`
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(part), &head); err != nil || head.Kind == "" {
				// Not an object: keep it, so the caller's validation sees and reports it.
				docs = append(docs, document{source: f.name, body: part})
				continue
			}
			_, isHook := head.Metadata.Annotations["helm.sh/hook"]
			docs = append(docs, document{source: f.name, kind: head.Kind, name: head.Metadata.Name, body: part, hook: isHook})
		}
	}
	sort.SliceStable(docs, func(i, j int) bool { return kindRank(docs[i].kind) < kindRank(docs[j].kind) })
	return docs
}

func splitDocs(text string) []string {
	var out []string
	for _, part := range strings.Split("\n"+text, "\n---") {
		trimmed := strings.TrimSpace(stripComments(part))
		if trimmed == "" {
			continue
		}
		out = append(out, strings.Trim(part, "\n"))
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Helm's install order (releaseutil.InstallOrder); unknown kinds go last.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

func kindRank(kind string) int {
	for i, k := range installOrder {
		if k == kind {
			return i
		}
	}
	return len(installOrder)
}

func readCluster(file string) ([]map[string]interface{}, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []map[string]interface{}
	for _, part := range splitDocs(string(b)) {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(part), &m); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func readCRDs(chartDir string) ([]document, error) {
	dir := filepath.Join(chartDir, "crds")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var docs []document
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		docs = append(docs, document{source: path.Join("crds", e.Name()), kind: "CustomResourceDefinition", name: e.Name(), body: strings.TrimRight(string(b), "\n")})
	}
	return docs, nil
}

// The one difference between deploy/ and the chart's defaults: a static
// manifest cannot generate a secret, and one committed to git is no secret.
// The collector's tokens come from a file the user writes next to the
// kustomization (token=… and api-token=… lines, see docs/install.md),
// through a secretGenerator.
const kustomizeTokenSecret = "podtap-collector-token"
const kustomizeTokenFile = "collector-tokens.env"

func kustomizeValues() map[string]interface{} {
	return map[string]interface{}{
		"collector": map[string]interface{}{
			"token": map[string]interface{}{"create": false, "existingSecret": kustomizeTokenSecret},
		},
	}
}

// writeKustomize writes a kustomize base: the chart's CRDs under crds/, the
// release namespace, every rendered object in podtap.yaml, and a
// kustomization.yaml listing them. Files it wrote before and no longer
// writes are removed, so the directory is exactly one render.
func writeKustomize(o options, docs, crds []document) error {
	dir := o.kustomizeDir
	if err := os.MkdirAll(filepath.Join(dir, "crds"), 0o755); err != nil {
		return err
	}
	header := "# Generated from charts/podtap with the chart's default values: do not edit. Regenerate:\n" +
		"#   GO111MODULE=off GOPATH=/usr/share/gocode go run ./tools/helm-render -kustomize deploy charts/podtap\n"
	keep := map[string]bool{}
	write := func(rel, body string) error {
		keep[filepath.Clean(rel)] = true
		return os.WriteFile(filepath.Join(dir, rel), []byte(body), 0o644)
	}
	var resources []string
	for _, c := range crds {
		rel := path.Join("crds", path.Base(c.source))
		if err := write(rel, c.body+"\n"); err != nil {
			return err
		}
		resources = append(resources, rel)
	}
	ns := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", o.namespace)
	if err := write("namespace.yaml", header+ns); err != nil {
		return err
	}
	resources = append(resources, "namespace.yaml")
	var all bytes.Buffer
	all.WriteString(header)
	for _, d := range docs {
		// Helm hooks (the uninstall Job) run only under Helm: applied by
		// kubectl they would run at once.
		if d.hook {
			continue
		}
		fmt.Fprintf(&all, "---\n# Source: %s\n%s\n", d.source, d.body)
	}
	if err := write("podtap.yaml", all.String()); err != nil {
		return err
	}
	resources = append(resources, "podtap.yaml")
	var k strings.Builder
	k.WriteString(header)
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	for _, r := range resources {
		k.WriteString("  - " + strconv.Quote(r) + "\n")
	}
	fmt.Fprintf(&k, "# The collector's tokens: write %s first (docs/install.md).\n", kustomizeTokenFile)
	fmt.Fprintf(&k, "secretGenerator:\n  - name: %s\n    namespace: %s\n    envs:\n      - %s\n",
		kustomizeTokenSecret, o.namespace, kustomizeTokenFile)
	if err := write(".gitignore", "# the collector's tokens (docs/install.md): never commit them\n/"+kustomizeTokenFile+"\n"); err != nil {
		return err
	}
	if err := write("kustomization.yaml", k.String()); err != nil {
		return err
	}
	return removeStale(dir, keep)
}

func removeStale(dir string, keep map[string]bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !keep[rel] && (strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml")) {
			return os.Remove(p)
		}
		return nil
	})
}

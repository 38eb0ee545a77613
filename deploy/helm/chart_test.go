// Package helm_test checks the codeexec chart offline: helm's own lint, rendering with
// the default and a full values file, and every rendered object decoded strictly into
// its Kubernetes API type, so that a misspelt or misplaced field is an error here
// rather than a pod that silently lacks it. It is a module of its own, so that the
// Helm SDK and the Kubernetes API types stay out of codeexec's build.
package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "codeexec"

// kubeVersion is the oldest Kubernetes the chart supports (appArmorProfile is 1.30's).
const kubeVersion = "v1.30.0"

// newObject returns an empty object of the API type of an apiVersion and kind the
// chart may render; any other is an error of the chart.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	}
	return nil, fmt.Errorf("the chart renders %s %s, which the test does not know", apiVersion, kind)
}

// rendered is the chart's output: each object decoded into its API type, by "Kind/name".
type rendered map[string]any

// render renders the chart with the values of valuesFile ("" for the defaults) and
// the overrides set, and decodes every document strictly.
func render(t *testing.T, valuesFile string, set map[string]any) (rendered, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	vals := map[string]any{}
	if valuesFile != "" {
		v, err := chartutil.ReadValuesFile(valuesFile)
		if err != nil {
			t.Fatalf("read %s: %v", valuesFile, err)
		}
		vals = v.AsMap()
	}
	for k, v := range set {
		vals[k] = v
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "codeexec", Namespace: "agents", Revision: 1, IsInstall: true}, caps)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	out := rendered{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt, helpers
		}
		for i, doc := range splitDocs(files[name]) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s, document %d: %v\n%s", name, i, err, doc)
			}
			obj, err := newObject(meta.APIVersion, meta.Kind)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := decodeStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s, %s %q: %v\n%s", name, meta.Kind, meta.Metadata.Name, err, doc)
			}
			key := meta.Kind + "/" + meta.Metadata.Name
			if _, dup := out[key]; dup {
				t.Fatalf("%s renders %s twice", name, key)
			}
			out[key] = obj
		}
	}
	return out, nil
}

// decodeStrict decodes YAML into obj through JSON, refusing unknown fields and
// duplicate keys, as the API server's strict field validation does.
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	return dec.Decode(obj)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a rendered file into its non-empty YAML documents.
func splitDocs(s string) []string {
	var docs []string
	for _, d := range docSeparator.Split(s, -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestLint(t *testing.T) {
	for _, values := range []string{"", "testdata/full-values.yaml"} {
		vals := map[string]any{}
		if values != "" {
			v, err := chartutil.ReadValuesFile(values)
			if err != nil {
				t.Fatal(err)
			}
			vals = v.AsMap()
		}
		kv, _ := chartutil.ParseKubeVersion(kubeVersion)
		l := lint.AllWithKubeVersion(chartDir, vals, "agents", kv)
		for _, m := range l.Messages {
			// An icon is only recommended (INFO); anything above is the chart's fault.
			if m.Severity > support.InfoSev {
				t.Errorf("helm lint (values %q): %s", values, m)
			}
		}
	}
}

func TestRenderDefaults(t *testing.T) {
	objs, err := render(t, "", nil)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	want := []string{"ConfigMap/codeexec", "PodDisruptionBudget/codeexec", "Secret/codeexec-keys",
		"Service/codeexec", "Service/codeexec-headless", "StatefulSet/codeexec"}
	if got := slices.Sorted(maps.Keys(objs)); !slices.Equal(got, want) {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	sts := objs["StatefulSet/codeexec"].(*appsv1.StatefulSet)
	headless := objs["Service/codeexec-headless"].(*corev1.Service)
	if sts.Spec.ServiceName != headless.Name || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("StatefulSet serviceName %q, headless Service %q with clusterIP %q, publishNotReadyAddresses %v: want the StatefulSet governed by a headless Service that publishes draining replicas",
			sts.Spec.ServiceName, headless.Name, headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", sts.Spec.Replicas)
	}
	pod := sts.Spec.Template.Spec
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: a Service named codeexec would give the pod CODEEXEC_PORT, which serve refuses")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: codeexec needs no token")
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	wantCaps := []corev1.Capability{"SYS_ADMIN", "SETUID", "SETGID", "DAC_OVERRIDE"}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, wantCaps) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities %+v, want drop ALL, add %v", sc.Capabilities, wantCaps)
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("the container is privileged, or does not say it is not")
	}
	// Kubernetes refuses SYS_ADMIN with allowPrivilegeEscalation: false.
	if sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not true, which the API server requires with SYS_ADMIN")
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Errorf("appArmorProfile %+v, want Unconfined: the runtime's profile denies mounts", sc.AppArmorProfile)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	if sc.ProcMount != nil {
		t.Errorf("procMount %q: Kubernetes admits Unmasked only with hostUsers: false; container-init unmasks /proc", *sc.ProcMount)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || !mounts(c, "/var/lib/codeexec/run") {
		t.Error("want a read-only root with the state dir /var/lib/codeexec/run mounted writable")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("liveness %+v, readiness %+v: want /healthz and /readyz", c.LivenessProbe, c.ReadinessProbe)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q replaces the image's entrypoint, codeexec container-init", c.Command)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if r := env["CODEEXEC_REPLICA"]; r.ValueFrom == nil || r.ValueFrom.FieldRef == nil || r.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("CODEEXEC_REPLICA = %+v, want the pod's name", r)
	}
	// Every replica lists all, by the names the StatefulSet gives its pods, at the
	// addresses the headless Service gives them.
	wantPeers := "codeexec-0=http://codeexec-0.codeexec-headless.agents.svc.cluster.local:8080," +
		"codeexec-1=http://codeexec-1.codeexec-headless.agents.svc.cluster.local:8080"
	if p := env["CODEEXEC_PEERS"].Value; p != wantPeers {
		t.Errorf("CODEEXEC_PEERS = %q, want %q", p, wantPeers)
	}
	if d, err := time.ParseDuration(env["CODEEXEC_DRAIN_TIMEOUT"].Value); err != nil || pod.TerminationGracePeriodSeconds == nil ||
		d > time.Duration(*pod.TerminationGracePeriodSeconds-10)*time.Second {
		t.Errorf("CODEEXEC_DRAIN_TIMEOUT = %q, terminationGracePeriodSeconds %v: want the drain to end 10s before the grace period",
			env["CODEEXEC_DRAIN_TIMEOUT"].Value, pod.TerminationGracePeriodSeconds)
	}
	if a := env["CODEEXEC_ADDR"].Value; a != "0.0.0.0:8080" {
		t.Errorf("CODEEXEC_ADDR = %q", a)
	}
	if _, ok := env["OPENAI_API_KEY"]; ok {
		t.Error("OPENAI_API_KEY set without an upstream key")
	}
	if _, ok := env["CODEEXEC_E2B_ADDR"]; ok || len(pod.Containers[0].Ports) != 1 {
		t.Errorf("the E2B listener is on by default: %+v", pod.Containers[0].Ports)
	}
	// The keys file the server reads is the one the Secret holds.
	secret := objs["Secret/codeexec-keys"].(*corev1.Secret)
	keys := string(secret.Data["keys.txt"])
	if !regexp.MustCompile(`^sk-[A-Za-z0-9]{40}\n$`).MatchString(keys) || env["CODEEXEC_API_KEYS_FILE"].Value != "/etc/codeexec/keys/keys.txt" || !mounts(c, "/etc/codeexec/keys") {
		t.Errorf("keys %q at %q: want one generated key in the Secret mounted where CODEEXEC_API_KEYS_FILE points", keys, env["CODEEXEC_API_KEYS_FILE"].Value)
	}
	cfg := configOf(t, objs["ConfigMap/codeexec"].(*corev1.ConfigMap))
	if cfg["max_total_memory"] != "6GiB" || cfg["max_total_cpus"] != 3.5 {
		t.Errorf("config %v: want the sandboxes' totals within the container's limits", cfg)
	}
	if !slices.Equal(c.Args, []string{"--config", "/etc/codeexec/config/config.json"}) || !mounts(c, "/etc/codeexec/config") {
		t.Errorf("args %q: want serve's --config at the mounted ConfigMap", c.Args)
	}
}

func TestRenderFullValues(t *testing.T) {
	objs, err := render(t, "testdata/full-values.yaml", nil)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	want := []string{"ConfigMap/sandbox", "HorizontalPodAutoscaler/sandbox", "PodDisruptionBudget/sandbox", "Secret/sandbox-upstream",
		"Service/sandbox", "Service/sandbox-headless", "ServiceMonitor/sandbox", "StatefulSet/sandbox"}
	if got := slices.Sorted(maps.Keys(objs)); !slices.Equal(got, want) {
		t.Fatalf("rendered %q, want %q (no keys Secret: it exists)", got, want)
	}
	sts := objs["StatefulSet/sandbox"].(*appsv1.StatefulSet)
	if sts.Spec.Replicas != nil {
		t.Errorf("replicas %d with the autoscaler on: the StatefulSet would fight it", *sts.Spec.Replicas)
	}
	hpa := objs["HorizontalPodAutoscaler/sandbox"].(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa.Spec.ScaleTargetRef.Kind != "StatefulSet" || hpa.Spec.ScaleTargetRef.Name != "sandbox" || hpa.Spec.MaxReplicas != 20 ||
		*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization != 60 {
		t.Errorf("HPA %+v", hpa.Spec)
	}
	sm := objs["ServiceMonitor/sandbox"].(*monitoringv1.ServiceMonitor)
	headless := objs["Service/sandbox-headless"].(*corev1.Service)
	clients := objs["Service/sandbox"].(*corev1.Service)
	if !selects(sm.Spec.Selector.MatchLabels, headless.Labels) || selects(sm.Spec.Selector.MatchLabels, clients.Labels) {
		t.Errorf("ServiceMonitor selects %v: want the headless Service only (each replica scraped once)", sm.Spec.Selector.MatchLabels)
	}
	if sm.Spec.Endpoints[0].Path != "/metrics" || sm.Labels["release"] != "prometheus" {
		t.Errorf("ServiceMonitor %+v", sm.Spec.Endpoints)
	}
	pdb := objs["PodDisruptionBudget/sandbox"].(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB %+v, want minAvailable 2 alone", pdb.Spec)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	// With the autoscaler, the peers are as many as it may make.
	if p := strings.Split(env["CODEEXEC_PEERS"].Value, ","); len(p) != 20 || p[19] != "sandbox-19=http://sandbox-19.sandbox-headless.agents.svc.cluster.local:8080" {
		t.Errorf("CODEEXEC_PEERS = %q, want the 20 replicas the autoscaler may make", p)
	}
	// The E2B listener: on every replica, in both Services, and at the peers' port.
	if env["CODEEXEC_E2B_ADDR"].Value != "0.0.0.0:49999" || len(c.Ports) != 2 || c.Ports[1].Name != "e2b" || c.Ports[1].ContainerPort != 49999 {
		t.Errorf("E2B listener: CODEEXEC_E2B_ADDR %q, ports %+v", env["CODEEXEC_E2B_ADDR"].Value, c.Ports)
	}
	for _, svc := range []*corev1.Service{clients, headless} {
		if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Name != "e2b" || svc.Spec.Ports[1].Port != 49999 || svc.Spec.Ports[1].TargetPort.StrVal != "e2b" {
			t.Errorf("Service %s ports %+v, want http and e2b", svc.Name, svc.Spec.Ports)
		}
	}
	if k := env["OPENAI_API_KEY"]; k.ValueFrom == nil || k.ValueFrom.SecretKeyRef.Name != "sandbox-upstream" || env["OPENAI_BASE_URL"].Value != "https://api.openai.com/v1" {
		t.Errorf("upstream env %+v %+v", env["OPENAI_API_KEY"], env["OPENAI_BASE_URL"])
	}
	if env["XAI_API_KEY"].ValueFrom == nil || len(c.EnvFrom) != 1 || env["CODEEXEC_API_KEYS_FILE"].Value != "/etc/codeexec/keys/keys" {
		t.Errorf("extra env %+v, envFrom %+v, keys file %q", env["XAI_API_KEY"], c.EnvFrom, env["CODEEXEC_API_KEYS_FILE"].Value)
	}
	var keysVol *corev1.Volume
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == "keys" {
			keysVol = &sts.Spec.Template.Spec.Volumes[i]
		}
	}
	if keysVol == nil || keysVol.Secret.SecretName != "codeexec-keys" {
		t.Errorf("keys volume %+v, want the existing Secret codeexec-keys", keysVol)
	}
	cm := objs["ConfigMap/sandbox"].(*corev1.ConfigMap)
	cfg := configOf(t, cm)
	if cfg["llm_config"] != "/etc/codeexec/config/llm.json" || cfg["safety"] != "static" || len(cfg["net_allow"].([]any)) != 2 {
		t.Errorf("config %v", cfg)
	}
	var llm struct {
		Providers []map[string]any `json:"providers"`
		Default   string           `json:"default"`
	}
	if err := json.Unmarshal([]byte(cm.Data["llm.json"]), &llm); err != nil || len(llm.Providers) != 2 || llm.Default != "openai" {
		t.Errorf("llm.json %q: %v", cm.Data["llm.json"], err)
	}
	if sts.Spec.Template.Annotations["example.com/team"] != "agents" || sts.Spec.Template.Labels["example.com/tier"] != "sandbox" ||
		sts.Spec.Template.Spec.PriorityClassName != "high" || len(sts.Spec.Template.Spec.TopologySpreadConstraints) != 1 {
		t.Errorf("pod template metadata or scheduling lost: %+v", sts.Spec.Template.ObjectMeta)
	}
}

// TestRenderRefuses: settings the chart owns, or that would break the pod, fail the
// rendering with a message naming them.
func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"addr in config", map[string]any{"config": map[string]any{"addr": "0.0.0.0:9000"}}, "config.addr is the chart's to set"},
		{"no auth", map[string]any{"config": map[string]any{"insecure_no_auth": true}}, "config.insecure_no_auth is the chart's to set"},
		{"peers in config", map[string]any{"config": map[string]any{"peers": []any{"a=http://a"}}}, "config.peers is the chart's to set"},
		{"drain past the grace period", map[string]any{"drainTimeoutSeconds": 40}, "drainTimeoutSeconds 40 leaves too little of terminationGracePeriodSeconds 45"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := render(t, "", tt.set); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("render with %v: %v, want an error containing %q", tt.set, err, tt.want)
			}
		})
	}
}

// TestValuesDocumented: every value of values.yaml is in the chart's README, so that
// an option added without its documentation fails here.
func TestValuesDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(data, &vals); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(prefix string, v any, depth int)
	walk = func(prefix string, v any, depth int) {
		m, ok := v.(map[string]any)
		// Probes, resources, the security context and serve's config are Kubernetes'
		// and serve's own structures, documented as wholes.
		if !ok || depth == 2 || slices.Contains([]string{"config", "resources", "securityContext", "livenessProbe", "readinessProbe", "startupProbe"}, prefix) {
			paths = append(paths, prefix)
			return
		}
		if len(m) == 0 {
			paths = append(paths, prefix)
		}
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, sub, depth+1)
		}
	}
	walk("", vals, 0)
	sort.Strings(paths)
	for _, p := range paths {
		if !strings.Contains(string(readme), "`"+p+"`") {
			t.Errorf("values.yaml's %s is not in %s/README.md (as `%s`)", p, chartDir, p)
		}
	}
}

func mounts(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

// selects reports whether every label of sel is in labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func configOf(t *testing.T, cm *corev1.ConfigMap) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
		t.Fatalf("config.json %q: %v", cm.Data["config.json"], err)
	}
	return cfg
}

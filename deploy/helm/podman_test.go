package helm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// containerImage is what scripts/container.sh builds.
const containerImage = "localhost/codeexec:latest"

// TestPodmanRunsTheChartsPod runs the built image under podman with the security
// context, arguments, environment and volumes the chart renders for the pod, and
// drives it from the host. It needs root, podman, runc and the image, takes a minute,
// and runs only with CODEEXEC_TEST_CONTAINER=1: CI does not build the image.
func TestPodmanRunsTheChartsPod(t *testing.T) {
	if os.Getenv("CODEEXEC_TEST_CONTAINER") != "1" {
		t.Skip("set CODEEXEC_TEST_CONTAINER=1 (after scripts/container.sh) to run the image under podman")
	}
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s: %v (scripts/container.sh installs it)", bin, err)
		}
	}
	if out, err := exec.Command("podman", "image", "exists", containerImage).CombinedOutput(); err != nil {
		t.Fatalf("no image %s (%v %s): run scripts/container.sh first", containerImage, err, out)
	}
	const key = "sk-container-test"
	objs, err := render(t, "", map[string]any{"apiKeys": map[string]any{"keys": []any{key}}})
	if err != nil {
		t.Fatal(err)
	}
	pod := podFromChart(t, objs)

	url, name := runPod(t, pod, pod.securityContext)
	waitReady(t, url, name)
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		return resp.StatusCode, m
	}
	if code, _ := call("POST", "/v1/execute", `{"code": "print(1)"}`); code != http.StatusOK {
		// Without a key the server answers 401: the keys file of the Secret is read.
		t.Fatalf("execute with the chart's key: %d", code)
	}
	tests := []struct {
		name, code string
		want       map[string]any
	}{
		{"numpy", "import numpy as np\nprint(int(np.arange(5).sum()))", map[string]any{"status": "ok", "stdout": "10\n"}},
		{"timeout", "while True: pass", map[string]any{"status": "timeout"}},
		{"memory", "x = bytearray(64 << 20)", map[string]any{"status": "memory_limit"}},
		{"only loopback", "import socket\nprint(socket.if_nameindex())", map[string]any{"status": "ok", "stdout": "[(1, 'lo')]\n"}},
		{"own proc", "import os\nprint(sorted(p for p in os.listdir('/proc') if p.isdigit()))", map[string]any{"status": "ok", "stdout": "['1']\n"}},
	}
	for _, tt := range tests {
		body, _ := json.Marshal(map[string]any{"code": tt.code, "timeout_ms": 2000, "memory_mb": 32})
		code, res := call("POST", "/v1/execute", string(body))
		for k, v := range tt.want {
			if code != http.StatusOK || res[k] != v {
				t.Errorf("%s: %d %v, want %s %v", tt.name, code, res, k, v)
			}
		}
	}
	code, sess := call("POST", "/v1/sessions", `{}`)
	id, _ := sess["id"].(string)
	if code != http.StatusCreated || id == "" {
		t.Fatalf("create a session: %d %v (sessions need the warm path)", code, sess)
	}
	call("POST", "/v1/sessions/"+id+"/execute", `{"code": "x = 41"}`)
	if code, res := call("POST", "/v1/sessions/"+id+"/execute", `{"code": "x + 1"}`); code != http.StatusOK || res["result"] != "42" {
		t.Errorf("session: %d %v, want result 42", code, res)
	}
	if code, res := call("PUT", "/v1/sessions/"+id+"/files/data.csv", "a,b\n1,2\n"); code != http.StatusOK || res["size"] != float64(8) {
		t.Errorf("upload: %d %v", code, res)
	}
	if code, res := call("POST", "/v1/sessions/"+id+"/execute", `{"code": "import pandas as pd\nint(pd.read_csv('data.csv').b.sum())"}`); code != http.StatusOK || res["result"] != "2" {
		t.Errorf("read the upload: %d %v", code, res)
	}

	// codeexec doctor in the running pod finds nothing missing.
	out, _ := exec.Command("podman", "exec", name, "codeexec", "doctor", "--json").Output()
	var checks []struct{ Name, Status, Detail, Fix string }
	if err := json.Unmarshal(out, &checks); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	for _, c := range checks {
		if c.Status == "fail" || c.Name == "container" && c.Status != "ok" {
			t.Errorf("doctor in the pod: %+v", c)
		}
	}

	// Without SYS_ADMIN the pod cannot nest sandboxes, and doctor says what to add.
	weak := pod.securityContext
	weak.Capabilities = &corev1.Capabilities{Drop: weak.Capabilities.Drop, Add: []corev1.Capability{"SETUID", "SETGID", "DAC_OVERRIDE"}}
	report, _ := podmanOutput(t, pod, weak, "doctor")
	if !strings.Contains(report, "✗ container") || !strings.Contains(report, "lacks the capabilities SYS_ADMIN") {
		t.Errorf("doctor without SYS_ADMIN:\n%s\nwant the container check to name SYS_ADMIN", report)
	}
}

// chartPod is what podman needs of the chart's pod template.
type chartPod struct {
	container       corev1.Container
	securityContext corev1.SecurityContext
	files           map[string]map[string]string // mount path → file → content, of the ConfigMap and Secret volumes
}

func podFromChart(t *testing.T, objs rendered) chartPod {
	t.Helper()
	sts := objs["StatefulSet/codeexec"].(*appsv1.StatefulSet)
	c := sts.Spec.Template.Spec.Containers[0]
	p := chartPod{container: c, securityContext: *c.SecurityContext, files: map[string]map[string]string{}}
	vols := map[string]corev1.Volume{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		switch {
		case v.ConfigMap != nil:
			p.files[m.MountPath] = objs["ConfigMap/"+v.ConfigMap.Name].(*corev1.ConfigMap).Data
		case v.Secret != nil:
			files := map[string]string{}
			for k, d := range objs["Secret/"+v.Secret.SecretName].(*corev1.Secret).Data {
				files[k] = string(d)
			}
			p.files[m.MountPath] = files
		case v.EmptyDir != nil:
			p.files[m.MountPath] = nil
		default:
			t.Fatalf("volume %q: the test knows ConfigMap, Secret and emptyDir volumes", m.Name)
		}
	}
	return p
}

// podmanArgs translates the pod into podman run's arguments, as a kubelet with
// containerd and runc sets up the container.
func podmanArgs(t *testing.T, p chartPod, sc corev1.SecurityContext) []string {
	t.Helper()
	args := []string{"--runtime", "runc"}
	// This machine's hard limits are below podman's defaults (1,048,576 files), and
	// raising them needs CAP_SYS_RESOURCE, which the test's own process lacks here.
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err == nil {
		args = append(args, "--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max))
	}
	args = append(args, "--ulimit", "nproc=4096:4096")
	if sc.Privileged != nil && *sc.Privileged {
		args = append(args, "--privileged")
	}
	if sc.RunAsUser != nil {
		args = append(args, "--user", strconv.FormatInt(*sc.RunAsUser, 10))
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Drop {
			args = append(args, "--cap-drop", string(c))
		}
		for _, c := range sc.Capabilities.Add {
			args = append(args, "--cap-add", string(c))
		}
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		args = append(args, "--security-opt", "seccomp=unconfined")
	}
	if sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		args = append(args, "--security-opt", "apparmor=unconfined")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	for path, files := range p.files {
		dir := t.TempDir()
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o400); err != nil {
				t.Fatal(err)
			}
		}
		opt := ":ro"
		if files == nil {
			opt = "" // an emptyDir
		}
		args = append(args, "-v", dir+":"+path+opt)
	}
	for _, e := range p.container.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			v = "codeexec-0" // the downward API's pod name
		} else if e.ValueFrom != nil {
			t.Fatalf("env %s: the test knows only the pod's name as a reference", e.Name)
		}
		args = append(args, "-e", e.Name+"="+v)
	}
	return args
}

// runPod starts the pod's container detached, published on a free loopback port,
// and removes it when the test ends. It returns the server's URL and the container's name.
func runPod(t *testing.T, p chartPod, sc corev1.SecurityContext) (string, string) {
	t.Helper()
	port := freePort(t)
	name := fmt.Sprintf("codeexec-test-%d", os.Getpid())
	args := append([]string{"run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port)}, podmanArgs(t, p, sc)...)
	args = append(append(args, containerImage), p.container.Args...)
	if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command("podman", "logs", name).CombinedOutput()
			t.Logf("the container's log:\n%s", logs)
		}
		_ = exec.Command("podman", "rm", "-f", "-t", "5", name).Run()
	})
	return fmt.Sprintf("http://127.0.0.1:%d", port), name
}

// podmanOutput runs codeexec cmd in the pod's container (through the entrypoint's
// container-init) and returns its output.
func podmanOutput(t *testing.T, p chartPod, sc corev1.SecurityContext, cmd ...string) (string, error) {
	t.Helper()
	args := append([]string{"run", "--rm", "--entrypoint", "/usr/local/bin/codeexec"}, podmanArgs(t, p, sc)...)
	args = append(append(args, containerImage, "container-init", "--", "/usr/local/bin/codeexec"), cmd...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var b bytes.Buffer
	c := exec.CommandContext(ctx, "podman", args...)
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.String(), err
}

func waitReady(t *testing.T, url, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if out, _ := exec.Command("podman", "inspect", "-f", "{{.State.Running}}", name).Output(); strings.TrimSpace(string(out)) != "true" {
			t.Fatal("the container stopped before it was ready")
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal("not ready within 90 s")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

package testenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BuildCodeexec builds cmd/codeexec of the module at root into dir and returns the
// binary's path.
func BuildCodeexec(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "codeexec")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/codeexec")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/codeexec: %w\n%s", err, out)
	}
	return bin, nil
}

// Replica is one `codeexec serve` process of a Deployment.
type Replica struct {
	Name     string
	API, E2B string // base URLs
	Log      string // its stderr, a file
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error // cmd.Wait's, once exited is closed
}

// Deployment is N `codeexec serve` processes on loopback ports acting as one
// deployment: each lists all of them in a peers file, as the chart's headless
// Service names its pods.
type Deployment struct {
	Replicas  []*Replica
	PeersFile string
}

// StartDeployment starts n replicas (r0, r1, …) of bin with the API key key and
// the extra serve flags, their files under dir, and waits until each is ready.
// The caller must call Stop.
func StartDeployment(ctx context.Context, bin, dir string, n int, key string, flags ...string) (*Deployment, error) {
	d := &Deployment{PeersFile: filepath.Join(dir, "peers")}
	var peers strings.Builder
	peers.WriteString("# NAME API_URL E2B_URL, as the headless Service names the pods\n")
	for i := range n {
		api, err := freeAddr()
		if err != nil {
			return nil, err
		}
		e2b, err := freeAddr()
		if err != nil {
			return nil, err
		}
		r := &Replica{Name: fmt.Sprintf("r%d", i), API: "http://" + api, E2B: "http://" + e2b, Log: filepath.Join(dir, fmt.Sprintf("r%d.log", i))}
		d.Replicas = append(d.Replicas, r)
		fmt.Fprintf(&peers, "%s %s %s\n", r.Name, r.API, r.E2B)
	}
	if err := os.WriteFile(d.PeersFile, []byte(peers.String()), 0o644); err != nil {
		return nil, err
	}
	for _, r := range d.Replicas {
		if err := r.start(bin, d.PeersFile, key, flags); err != nil {
			d.Stop()
			return nil, err
		}
	}
	for _, r := range d.Replicas {
		if err := r.WaitReady(ctx); err != nil {
			d.Stop()
			return nil, err
		}
	}
	return d, nil
}

// freeAddr is a loopback address with a port nothing listens on now, below the
// kernel's range of ephemeral ports: a port of that range, free now, may be taken by
// any outgoing connection before the replica binds it (seconds later, once its
// interpreters are warm).
func freeAddr() (string, error) {
	low := 32768
	if f := strings.Fields(readFile("/proc/sys/net/ipv4/ip_local_port_range")); len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil {
			low = n
		}
	}
	if low <= 11000 {
		return "", fmt.Errorf("the ephemeral ports start at %d: no room below them", low)
	}
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(10000+rand.IntN(low-10000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free port below the ephemeral range")
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func (r *Replica) start(bin, peersFile, key string, flags []string) error {
	logf, err := os.Create(r.Log)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"serve", "--addr", strings.TrimPrefix(r.API, "http://"), "--e2b-addr", strings.TrimPrefix(r.E2B, "http://"),
		"--replica", r.Name, "--peers-file", peersFile}, flags...)
	r.cmd = exec.Command(bin, args...)
	// serve refuses CODEEXEC_ variables it does not know; pass only the store.
	env := []string{"CODEEXEC_API_KEYS=" + key}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CODEEXEC_") || strings.HasPrefix(kv, "CODEEXEC_STORE=") {
			env = append(env, kv)
		}
	}
	r.cmd.Env = env
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.Name, err)
	}
	r.exited = make(chan struct{})
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	return nil
}

// WaitReady waits until r's /readyz answers 200, r exits, or ctx ends.
func (r *Replica) WaitReady(ctx context.Context) error {
	for {
		resp, err := http.Get(r.API + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("%s exited before it was ready (%v); its log:\n%s", r.Name, r.err, r.Tail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w; its log:\n%s", r.Name, ctx.Err(), r.Tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Signal sends sig to r's process.
func (r *Replica) Signal(sig os.Signal) error { return r.cmd.Process.Signal(sig) }

// Wait waits for r to exit, or ctx to end, and returns how it exited.
func (r *Replica) Wait(ctx context.Context) error {
	select {
	case <-r.exited:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("%s has not exited: %w", r.Name, ctx.Err())
	}
}

// Exited reports whether r's process has ended.
func (r *Replica) Exited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// Tail is the end of r's log.
func (r *Replica) Tail() string {
	data, _ := os.ReadFile(r.Log)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Stop ends every replica still running: SIGTERM, then SIGKILL after 30s.
func (d *Deployment) Stop() {
	for _, r := range d.Replicas {
		if r.cmd != nil && r.cmd.Process != nil && !r.Exited() {
			_ = r.Signal(syscall.SIGTERM)
		}
	}
	for _, r := range d.Replicas {
		if r.cmd == nil || r.exited == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := r.Wait(ctx); err != nil && !errors.As(err, new(*exec.ExitError)) {
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		cancel()
	}
}

// Pid is r's process id.
func (r *Replica) Pid() int { return r.cmd.Process.Pid }

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/job"
)

// coldSandbox makes what the cold path makes before its init starts: a work dir and
// a cgroup with limits l on r. Both are removed when the test ends.
func coldSandbox(t *testing.T, r *Runner, l job.Limits) (*workDir, *cgroup.Group) {
	t.Helper()
	name := r.nextName()
	w, err := newWorkDir(filepath.Join(r.inst.dir, name), l.WorkBytes, r.cfg.HostUID+sandboxUID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.remove() })
	g, err := r.cg.New(name, cgroupLimits(l))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Destroy() })
	return w, g
}

// tree lists every entry under dir, directories and hidden files included.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInputsAllOrNothing places input files the way the cold path does: what fits
// is placed whole, owned by the sandbox user and charged to the sandbox's cgroup;
// what does not is refused with ErrStorageLimit and leaves nothing behind, whether
// the check before the write finds it or the kernel refuses the write.
func TestInputsAllOrNothing(t *testing.T) {
	t.Run("cold", func(t *testing.T) {
		r := sharedRunnerFor(t, "cold")
		mib := func(n float64) []byte { return bytes.Repeat([]byte("x"), int(n*(1<<20))) }
		cases := []struct {
			name   string
			limits func(*job.Limits)
			files  []job.InputFile
			// unchecked skips the check before the write, as when the sandbox fills
			// up between the check and the write.
			unchecked bool
			wantMsg   string // "" for success
		}{
			{name: "fits", files: []job.InputFile{{Path: "a.txt", Data: []byte("hello")}, {Path: "sub/dir/b.bin", Data: mib(1)}}},
			{name: "work dir, checked", limits: func(l *job.Limits) { l.WorkBytes = 2 << 20; l.FileBytes = 2 << 20 },
				files: []job.InputFile{{Path: "a.bin", Data: mib(1)}, {Path: "b.bin", Data: mib(1.5)}}, wantMsg: "/work has"},
			{name: "work dir, refused by the kernel", limits: func(l *job.Limits) { l.WorkBytes = 2 << 20; l.FileBytes = 2 << 20 },
				files: []job.InputFile{{Path: "x/a.bin", Data: mib(1)}, {Path: "x/y/b.bin", Data: mib(1.5)}}, unchecked: true, wantMsg: "do not fit in /work"},
			{name: "file size", limits: func(l *job.Limits) { l.FileBytes = 1 << 20 },
				files: []job.InputFile{{Path: "a.bin", Data: mib(2)}}, wantMsg: "1 MiB file size limit"},
			{name: "memory, checked", limits: func(l *job.Limits) { l.MemoryBytes = 16 << 20 },
				files: []job.InputFile{{Path: "a.bin", Data: mib(20)}}, wantMsg: "of its 16 MiB memory limit free"},
			{name: "memory, refused by the kernel", limits: func(l *job.Limits) { l.MemoryBytes = 16 << 20 },
				files: []job.InputFile{{Path: "m/a.bin", Data: mib(10)}, {Path: "m/b.bin", Data: mib(10)}}, unchecked: true, wantMsg: "16 MiB memory limit"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				l := job.DefaultLimits()
				if c.limits != nil {
					c.limits(&l)
				}
				w, g := coldSandbox(t, r, l)
				iw := r.inputWriter(g, l)
				var err error
				if c.unchecked {
					root, rerr := os.OpenRoot(w.dir)
					if rerr != nil {
						t.Fatal(rerr)
					}
					defer root.Close()
					err = iw.put(root, c.files, w.inputs)
				} else {
					err = w.writeInputs(c.files, iw)
				}
				if c.wantMsg != "" {
					if !errors.Is(err, job.ErrStorageLimit) || !strings.Contains(err.Error(), c.wantMsg) {
						t.Fatalf("error %v, want ErrStorageLimit saying %q", err, c.wantMsg)
					}
					if strings.Contains(err.Error(), w.dir) {
						t.Errorf("error %q shows the host path %q", err, w.dir)
					}
					if left := tree(t, w.dir); len(left) > 0 {
						t.Errorf("a failed placement left %v", left)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var total int64
				for _, f := range c.files {
					p := filepath.Join(w.dir, f.Path)
					data, err := os.ReadFile(p)
					if err != nil || !bytes.Equal(data, f.Data) {
						t.Errorf("%s: %d bytes (%v), want %d", f.Path, len(data), err, len(f.Data))
					}
					fi, err := os.Lstat(p)
					if err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(r.cfg.HostUID+sandboxUID) {
						t.Errorf("%s is not owned by the sandbox user: %v", f.Path, err)
					}
					total += int64(len(f.Data))
				}
				if got, want := tree(t, w.dir), []string{"a.txt", "sub", "sub/dir", "sub/dir/b.bin"}; !slices.Equal(got, want) {
					t.Errorf("work dir holds %v, want %v", got, want)
				}
				if st, _ := g.Stats(); st.MemoryBytes < total {
					t.Errorf("the sandbox's cgroup holds %d bytes after %d bytes of input files: they are not charged to it", st.MemoryBytes, total)
				}
			})
		}
	})
}

// TestUploadOOMKeepsSession makes the kernel refuse an upload — the session's memory
// runs out while the writer writes — and checks that the upload fails, not the
// session: nothing is killed, and the OOM killer is back for the program afterwards.
func TestUploadOOMKeepsSession(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		l := job.DefaultLimits()
		l.MemoryBytes = 32 << 20
		s := newTestSession(t, r, l)
		sessionRun(t, s, "x = 41")
		before, _ := s.s.g.Stats()
		// As if the program had allocated between the check and the write.
		err := s.inputs.put(s.work.root, []job.InputFile{{Path: "big.bin", Data: bytes.Repeat([]byte("b"), 40<<20)}}, s.work.inputs)
		if !errors.Is(err, job.ErrStorageLimit) || !strings.Contains(err.Error(), "32 MiB memory limit") {
			t.Fatalf("error %v, want ErrStorageLimit naming the 32 MiB memory limit", err)
		}
		if after, _ := s.s.g.Stats(); r.CgroupVersion() == cgroup.V1 && after.OOMKills != before.OOMKills {
			t.Errorf("the group saw %d OOM kills during the upload, want none (v1 pauses the killer)", after.OOMKills-before.OOMKills)
		}
		if files, _, err := s.Files(); err != nil || len(files) != 0 {
			t.Errorf("files after the refused upload: %v %v, want none", files, err)
		}
		if res := sessionRun(t, s, "x + 1"); res.Status != job.StatusOK || deref(res.Result) != "42" {
			t.Fatalf("the session after the refused upload: %s %s %q", res.Status, deref(res.Result), res.Stderr)
		}
		// The killer is back: the program's own excess ends as usual.
		if res := sessionRun(t, s, "b = bytearray(64 << 20)"); res.Status != job.StatusMemoryLimit {
			t.Errorf("64 MiB in a 32 MiB session after the upload: status %s, want memory_limit", res.Status)
		}
	})
}

// TestStorageBudget fills a runner's storage budget with sandboxes and checks that the
// next is refused, and that the budget is given back when they end.
func TestStorageBudget(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		rootfs := testRootfs(t)
		dir := t.TempDir()
		// The sandbox's unprivileged init must be able to traverse to its work dir.
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		cfg := testConfig(rootfs, filepath.Join(dir, "state"), pathName(r))
		l := job.DefaultLimits()
		cfg.Prefork = 0
		cfg.MaxTotalStorage = 2 * tmpfsBytes(l)
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		req := func() *job.Request { return &job.Request{Code: "print(1)", Limits: l} }
		if cfg.Warm {
			if err := r.Warm(); err != nil {
				t.Fatal(err)
			}
			// Two sessions take the budget; a third sandbox of any kind is refused.
			a, err := r.NewSession(context.Background(), l)
			if err != nil {
				t.Fatal(err)
			}
			b, err := r.NewSession(context.Background(), l)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.NewSession(context.Background(), l); !errors.Is(err, job.ErrStorageLimit) {
				t.Errorf("a third session: %v, want ErrStorageLimit", err)
			}
			if _, err := r.Run(context.Background(), req()); !errors.Is(err, job.ErrStorageLimit) {
				t.Errorf("an execution beside two sessions: %v, want ErrStorageLimit", err)
			}
			a.Close()
			b.Close()
			r.cleanups.Wait()
		}
		if used, budget := r.StorageUsed(); used != 0 || budget != cfg.MaxTotalStorage {
			t.Errorf("StorageUsed() = %d, %d; want 0, %d", used, budget, cfg.MaxTotalStorage)
		}
		res, err := r.Run(context.Background(), req())
		if err != nil || res.Status != job.StatusOK {
			t.Fatalf("an execution within the budget: %v %+v", err, res)
		}
		big := req()
		big.Limits.WorkBytes = cfg.MaxTotalStorage
		if _, err := r.Run(context.Background(), big); !errors.Is(err, job.ErrStorageLimit) || !strings.Contains(err.Error(), "storage budget") {
			t.Errorf("an execution larger than the budget: %v, want ErrStorageLimit", err)
		}
		r.cleanups.Wait()
		if used, _ := r.StorageUsed(); used != 0 {
			t.Errorf("%d bytes of the budget still held after every sandbox ended", used)
		}
	})
}

package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/cleanup"
	"github.com/codeexec/codeexec/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// instance is one Runner's share of the state dir: <state>/<id>/, held by an flock on
// <state>/<id>/lock for as long as the Runner lives. Several processes (a server and
// CLI runs) can share a state dir; an unlocked instance belongs to a process that died
// and is swept by the next one to start.
type instance struct {
	id   string
	dir  string
	lock *os.File
}

func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// openInstance creates and locks a new instance dir under state. The caller must call
// close.
func openInstance(state string) (*instance, error) {
	if err := os.MkdirAll(state, 0o711); err != nil {
		return nil, err
	}
	// The sandbox's init runs as an unprivileged host uid and must traverse to the
	// work dir it bind-mounts.
	if err := os.Chmod(state, 0o711); err != nil {
		return nil, err
	}
	id := newInstanceID()
	// Made under a dot name and renamed once locked, so that a concurrent sweep never
	// sees it unlocked.
	tmp := filepath.Join(state, ".new-"+id)
	if err := os.Mkdir(tmp, 0o711); err != nil {
		return nil, err
	}
	cu := cleanup.Make(func() { os.RemoveAll(tmp) })
	defer cu.Clean()
	lock, err := os.OpenFile(filepath.Join(tmp, "lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	cu.Add(func() { lock.Close() })
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, &os.SyscallError{Syscall: "flock", Err: err}
	}
	dir := filepath.Join(state, id)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	cu.Release()
	return &instance{id: id, dir: dir, lock: lock}, nil
}

func (in *instance) close() error {
	err := mountinfo.UnmountUnder(in.dir)
	if e := os.RemoveAll(in.dir); e != nil {
		err = errors.Join(err, e)
	}
	return errors.Join(err, in.lock.Close())
}

// sweepState removes the instance dirs under state whose owner is gone, and those
// instances' cgroups. Cgroups of instances it does not know are left alone: they may
// belong to a live runner with another state dir.
func sweepState(state string, cg *cgroup.Hierarchy) error {
	entries, err := os.ReadDir(state)
	if err != nil {
		return err
	}
	dead := map[string]bool{}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(state, e.Name())
		if held(filepath.Join(dir, "lock")) {
			continue
		}
		dead[e.Name()] = true
		if err := mountinfo.UnmountUnder(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if cg != nil && len(dead) > 0 {
		err := cg.Sweep(func(name string) bool {
			id, _, _ := strings.Cut(name, "-")
			return !dead[id]
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// held reports whether another process holds the lock file's flock.
func held(lockPath string) bool {
	f, err := os.OpenFile(lockPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

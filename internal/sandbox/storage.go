package sandbox

import (
	"fmt"
	"sync"

	"github.com/codeexec/codeexec/internal/job"
)

// storageLimit returns a job.ErrStorageLimit that explains itself.
func storageLimit(format string, args ...any) error {
	return fmt.Errorf("%w: %s", job.ErrStorageLimit, fmt.Sprintf(format, args...))
}

// tmpfsBytes is what a sandbox's tmpfs mounts may hold together: /work, /tmp and
// /dev/shm.
func tmpfsBytes(l job.Limits) int64 { return l.WorkBytes + 2*l.TmpBytes }

// storageBudget bounds the sum of the tmpfs sizes of a runner's live sandboxes
// (preforked ones included). A sandbox's files are charged to its own cgroup, so its
// memory limit bounds what it actually stores, and the parent cgroup's limit bounds
// the sum; the budget keeps the runner from promising, in file system sizes, more
// than the host has, and refuses a new sandbox clearly rather than letting the host
// run out of memory later.
//
// Counting bytes actually stored was the rejected alternative: the program's own
// writes do not pass through the server, so such a budget could refuse only uploads,
// and the sum would change under it between the check and the write.
type storageBudget struct {
	max int64 // 0: no budget

	mu   sync.Mutex
	used int64
}

// reserve books room for a sandbox with limits l. The caller must call the returned
// function, once the sandbox's mounts are gone; calling it again does nothing.
func (b *storageBudget) reserve(l job.Limits) (release func(), err error) {
	n := tmpfsBytes(l)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max > 0 && b.used+n > b.max {
		return nil, storageLimit("a sandbox needs %s of file systems (a %s work dir, /tmp and /dev/shm of %s each), and the server's storage budget for all sandboxes, %s, has %s left",
			job.FormatBytes(n), job.FormatBytes(l.WorkBytes), job.FormatBytes(l.TmpBytes), job.FormatBytes(b.max), job.FormatBytes(max(b.max-b.used, 0)))
	}
	b.used += n
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.used -= n
			b.mu.Unlock()
		})
	}, nil
}

// StorageUsed reports how many bytes of the storage budget the live sandboxes hold,
// and the budget (0: none).
func (r *Runner) StorageUsed() (used, budget int64) {
	r.storage.mu.Lock()
	defer r.storage.mu.Unlock()
	return r.storage.used, r.storage.max
}

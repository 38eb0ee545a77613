package job

import (
	"fmt"
	"time"
)

// Limits bound what one execution may use. Every field must be set; DefaultLimits
// gives the server's defaults and Clamp keeps a caller's request within a maximum.
type Limits struct {
	// Timeout is the wall-clock limit; the whole process tree is killed at it.
	Timeout time.Duration `json:"timeout"`
	// MemoryBytes caps the memory of the whole tree (sandboxes have no swap), enforced
	// by the cgroup; files in its tmpfs count against it.
	MemoryBytes int64 `json:"memory_bytes"`
	// Pids caps processes plus threads in the sandbox.
	Pids int64 `json:"pids"`
	// CPUs is the CPU bandwidth in cores.
	CPUs float64 `json:"cpus"`
	// OutputBytes caps stdout and stderr each; the program is stopped beyond it.
	OutputBytes int64 `json:"output_bytes"`
	// WorkBytes is the size of the writable work dir (a tmpfs).
	WorkBytes int64 `json:"work_bytes"`
	// TmpBytes is the size of /tmp and of /dev/shm (each a tmpfs).
	TmpBytes int64 `json:"tmp_bytes"`
	// FileBytes is the largest file the program may write (RLIMIT_FSIZE).
	FileBytes int64 `json:"file_bytes"`
	// OpenFiles is the most file descriptors a process may hold (RLIMIT_NOFILE).
	OpenFiles uint64 `json:"open_files"`
}

// DefaultLimits are the limits used when the caller sets none.
func DefaultLimits() Limits {
	return Limits{
		Timeout:     30 * time.Second,
		MemoryBytes: 512 << 20,
		Pids:        64,
		CPUs:        1,
		OutputBytes: 1 << 20,
		WorkBytes:   128 << 20,
		TmpBytes:    64 << 20,
		FileBytes:   64 << 20,
		OpenFiles:   256,
	}
}

// Validate reports the first limit that is missing or out of range.
func (l Limits) Validate() error {
	switch {
	case l.Timeout <= 0:
		return fmt.Errorf("limits: timeout %v must be positive", l.Timeout)
	case l.MemoryBytes < 16<<20:
		return fmt.Errorf("limits: memory %d bytes is below the 16 MiB minimum", l.MemoryBytes)
	case l.Pids < 8:
		return fmt.Errorf("limits: pids %d is below the minimum of 8", l.Pids)
	case l.CPUs <= 0:
		return fmt.Errorf("limits: cpus %v must be positive", l.CPUs)
	case l.OutputBytes <= 0:
		return fmt.Errorf("limits: output %d bytes must be positive", l.OutputBytes)
	case l.WorkBytes < 1<<20:
		return fmt.Errorf("limits: work dir %d bytes is below the 1 MiB minimum", l.WorkBytes)
	case l.TmpBytes < 1<<20:
		return fmt.Errorf("limits: tmp %d bytes is below the 1 MiB minimum", l.TmpBytes)
	case l.FileBytes <= 0:
		return fmt.Errorf("limits: file size %d bytes must be positive", l.FileBytes)
	case l.FileBytes > l.WorkBytes && l.FileBytes > l.TmpBytes:
		return fmt.Errorf("limits: file size %d exceeds both work dir %d and tmp %d", l.FileBytes, l.WorkBytes, l.TmpBytes)
	case l.OpenFiles < 16:
		return fmt.Errorf("limits: open files %d is below the minimum of 16", l.OpenFiles)
	}
	return nil
}

// Clamp lowers every limit of l that exceeds max to max's value: a caller may ask for
// less than the server allows, never more.
func (l Limits) Clamp(max Limits) Limits {
	l.Timeout = min(l.Timeout, max.Timeout)
	l.MemoryBytes = min(l.MemoryBytes, max.MemoryBytes)
	l.Pids = min(l.Pids, max.Pids)
	l.CPUs = min(l.CPUs, max.CPUs)
	l.OutputBytes = min(l.OutputBytes, max.OutputBytes)
	l.WorkBytes = min(l.WorkBytes, max.WorkBytes)
	l.TmpBytes = min(l.TmpBytes, max.TmpBytes)
	l.FileBytes = min(l.FileBytes, max.FileBytes)
	l.OpenFiles = min(l.OpenFiles, max.OpenFiles)
	return l
}

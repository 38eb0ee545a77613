package job

import (
	"errors"
	"fmt"
)

// ErrStorageLimit is returned when files do not fit in a sandbox — in its work dir,
// under its file size limit, or in its memory, which a sandbox's files count against
// — or when a new sandbox's file systems do not fit in the runner's storage budget.
// The error's text says which limit it met.
var ErrStorageLimit = errors.New("sandbox: storage limit")

// storageLimit returns an ErrStorageLimit that explains itself.
func storageLimit(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrStorageLimit, fmt.Sprintf(format, args...))
}

// FormatBytes writes n for a reader: "16 MiB", "13.4 MiB", "2 GiB", "512 bytes".
func FormatBytes(n int64) string {
	units := []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

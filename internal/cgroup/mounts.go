package cgroup

import "github.com/codeexec/codeexec/internal/mountinfo"

// mountTable is what the mount table says about cgroup file systems.
type mountTable struct {
	v1 map[string]string // controller → mount point
	v2 []string          // cgroup2 mount points
}

// unified returns the cgroup2 mount point, if any.
func (m mountTable) unified() (string, bool) {
	if len(m.v2) == 0 {
		return "", false
	}
	return m.v2[0], true
}

// FromMounts picks the cgroup hierarchies out of a mount table: the v1 mount point of
// each controller, and the cgroup2 mount points.
func FromMounts(mounts []mountinfo.Mount) (v1 map[string]string, v2 []string) {
	t := cgroupMounts(mounts)
	return t.v1, t.v2
}

func readMounts() (mountTable, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return mountTable{}, err
	}
	return cgroupMounts(mounts), nil
}

func cgroupMounts(mounts []mountinfo.Mount) mountTable {
	t := mountTable{v1: map[string]string{}}
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			t.v2 = append(t.v2, m.Point)
		case "cgroup":
			for _, opt := range m.SuperOptions {
				if opt == "rw" || opt == "ro" {
					continue
				}
				if _, seen := t.v1[opt]; !seen {
					t.v1[opt] = m.Point
				}
			}
		}
	}
	return t
}

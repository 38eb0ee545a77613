package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/codeexec/codeexec/internal/container"
	"github.com/codeexec/codeexec/internal/mountinfo"
)

// containerCaps are the capabilities codeexec needs in a container that does not run
// privileged, each for a reason found by running the sandboxes' tests in one:
// SYS_ADMIN for the sandboxes' namespaces and mounts (and container-init's remounts),
// SETUID and SETGID to map a sandbox's ids to host uids 1100000 and up, DAC_OVERRIDE
// for the /proc files of sandbox processes owned by those uids (oom_score_adj). No
// other: signals, setns and the like reach sandboxes through the user namespaces the
// server owns, in which its uid has every capability.
var containerCaps = []string{"SYS_ADMIN", "SETUID", "SETGID", "DAC_OVERRIDE"}

// capBits are the numbers of containerCaps (linux/capability.h).
var capBits = map[string]uint{"DAC_OVERRIDE": 1, "SETGID": 6, "SETUID": 7, "SYS_ADMIN": 21}

// containerFacts is what the container check judges, read from the process and its
// mount table.
type containerFacts struct {
	runtime  container.Runtime
	capEff   uint64   // the effective capability set
	masks    []string // mounts stacked on /proc
	roCgroup []string // cgroup mounts that are read-only
	apparmor string   // the AppArmor label, e.g. "cri-containerd.apparmor.d (enforce)"; "" without AppArmor
}

func checkContainer(procDir string) Check {
	f := containerFacts{runtime: container.Detect("/", os.Getenv)}
	if f.runtime == container.None {
		return containerCheck(f)
	}
	if fields, err := statusFields(procDir); err == nil {
		f.capEff, _ = strconv.ParseUint(fields["CapEff"], 16, 64)
	}
	if mounts, err := mountinfo.Read(); err == nil {
		f.masks = container.ProcMasks(mounts)
		f.roCgroup = container.ReadOnlyCgroups(mounts)
	}
	for _, p := range []string{"self/attr/apparmor/current", "self/attr/current"} {
		if data, err := os.ReadFile(filepath.Join(procDir, p)); err == nil {
			f.apparmor = strings.TrimRight(string(data), "\x00\n")
			break
		}
	}
	return containerCheck(f)
}

// containerCheck says what a container lacks for nesting sandboxes, in the terms of
// its runtime: the pod spec's fields in Kubernetes, run flags for podman and Docker.
func containerCheck(f containerFacts) Check {
	c := Check{Name: "container"}
	if f.runtime == container.None {
		c.Status, c.Detail = OK, "not in a container"
		return c
	}
	k8s := f.runtime == container.Kubernetes
	var problems, fixes []string
	var lack []string
	for _, name := range containerCaps {
		if f.capEff&(1<<capBits[name]) == 0 {
			lack = append(lack, name)
		}
	}
	if len(lack) > 0 {
		problems = append(problems, "lacks the capabilities "+strings.Join(lack, ", "))
		if k8s {
			fixes = append(fixes, "securityContext.capabilities.add: ["+strings.Join(containerCaps, ", ")+"] (the chart's default)")
		} else {
			fixes = append(fixes, "--cap-add "+strings.Join(containerCaps, ","))
		}
	}
	if strings.HasSuffix(f.apparmor, "(enforce)") {
		problems = append(problems, fmt.Sprintf("runs under the AppArmor profile %q, whose default denies mounts", strings.TrimSuffix(f.apparmor, " (enforce)")))
		if k8s {
			fixes = append(fixes, "securityContext.appArmorProfile.type: Unconfined")
		} else {
			fixes = append(fixes, "--security-opt apparmor=unconfined")
		}
	}
	if len(f.masks) > 0 || len(f.roCgroup) > 0 {
		var what []string
		if len(f.masks) > 0 {
			what = append(what, fmt.Sprintf("%d masks on /proc (a sandbox cannot mount its own /proc under them)", len(f.masks)))
		}
		if len(f.roCgroup) > 0 {
			what = append(what, "read-only cgroups ("+strings.Join(f.roCgroup, ", ")+")")
		}
		problems = append(problems, "has "+strings.Join(what, " and "))
		// The image's entrypoint removes both, given SYS_ADMIN: without it, the
		// capability is the fix; with it, the entrypoint was skipped.
		if slices.Contains(lack, "SYS_ADMIN") {
			fixes[0] += " (with SYS_ADMIN the image's entrypoint, `codeexec container-init`, detaches the masks and makes the cgroups writable)"
		} else {
			fixes = append(fixes, "start the container through the image's entrypoint, `codeexec container-init -- …`, which detaches the masks "+
				"and remounts the cgroups read-write: a command that replaces the entrypoint must start with it")
		}
	}
	c.Detail = fmt.Sprintf("in a %s container", f.runtime)
	if len(problems) == 0 {
		c.Status = OK
		c.Detail += ": the capabilities " + strings.Join(containerCaps, ", ") + ", /proc unmasked, cgroups writable"
		if f.apparmor != "" {
			c.Detail += ", AppArmor " + f.apparmor
		}
		return c
	}
	c.Status = Fail
	c.Detail += " that " + strings.Join(problems, "; ")
	c.Fix = strings.Join(fixes, "; ")
	return c
}

// containerHint is the fix for a failure inside a container of runtime rt, in its
// terms, or "" outside one.
func containerHint(rt container.Runtime) string {
	switch rt {
	case container.None:
		return ""
	case container.Kubernetes:
		return "in Kubernetes, give the container securityContext.capabilities.add [" + strings.Join(containerCaps, ", ") +
			"], seccompProfile RuntimeDefault (or Unconfined) and appArmorProfile Unconfined, as the chart does (see the container check)"
	default:
		return "run the container with --cap-drop ALL --cap-add " + strings.Join(containerCaps, ",") +
			" --security-opt apparmor=unconfined (see the container check)"
	}
}

package sandbox

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"golang.org/x/sys/unix"
)

// zygoteProgram is the zygote's Python source: the constants it shares with the Go
// side, generated from Go's values, then the harness and the fork server.
var zygoteProgram = harness.Zygote(zygoteConstants())

// zygoteConstant is a value zygote.py uses under name.
type zygoteConstant struct {
	name  string
	value any // an integer, a string or a list of strings
}

// zygoteConstants lists what the warm child shares with the cold init and the
// runner: the sandbox's ids and work dir, the namespaces and mount flags both paths
// make, the prctl and ioctl numbers they call, and the proxy variables. Nothing in it
// is copied into zygote.py by hand (TestZygoteConstantsNotCopied).
func zygoteConstants() string {
	list := []zygoteConstant{
		{"SANDBOX_UID", sandboxUID},
		{"SANDBOX_GID", sandboxGID},
		{"WORK_DIR", sandboxWorkDir},
		{"HOME_DIR", sandboxHomeDir},
		{"HOME_USER", sandboxHomeUser},
		// The child shares the zygote's user namespace, and the zygote's fork makes
		// its pid namespace; it unshares the rest of what the cold path clones.
		{"CHILD_NAMESPACES", sandboxCloneFlags &^ (unix.CLONE_NEWUSER | unix.CLONE_NEWPID)},
		{"CLONE_NEWPID", unix.CLONE_NEWPID},
		{"CLONE_NEWCGROUP", unix.CLONE_NEWCGROUP},
		{"PROC_MOUNT_FLAGS", procMountFlags},
		{"TMPFS_MOUNT_FLAGS", tmpfsMountFlags},
		{"MASK_DIR_FLAGS", maskDirFlags},
		{"MS_RDONLY", unix.MS_RDONLY},
		{"MS_NOSUID", unix.MS_NOSUID},
		{"MS_NODEV", unix.MS_NODEV},
		{"MS_NOEXEC", unix.MS_NOEXEC},
		{"MS_REMOUNT", unix.MS_REMOUNT},
		{"MS_BIND", unix.MS_BIND},
		{"MS_REC", unix.MS_REC},
		{"PR_SET_PDEATHSIG", unix.PR_SET_PDEATHSIG},
		{"PR_SET_DUMPABLE", unix.PR_SET_DUMPABLE},
		{"PR_SET_SECCOMP", unix.PR_SET_SECCOMP},
		{"PR_CAPBSET_DROP", unix.PR_CAPBSET_DROP},
		{"PR_CAPBSET_READ", unix.PR_CAPBSET_READ},
		{"PR_SET_THP_DISABLE", unix.PR_SET_THP_DISABLE},
		{"PR_SET_NO_NEW_PRIVS", unix.PR_SET_NO_NEW_PRIVS},
		{"PR_CAP_AMBIENT", unix.PR_CAP_AMBIENT},
		{"PR_CAP_AMBIENT_CLEAR_ALL", unix.PR_CAP_AMBIENT_CLEAR_ALL},
		{"SECCOMP_MODE_FILTER", unix.SECCOMP_MODE_FILTER},
		{"LINUX_CAPABILITY_VERSION_3", unix.LINUX_CAPABILITY_VERSION_3},
		{"SIOCGIFFLAGS", unix.SIOCGIFFLAGS},
		{"SIOCSIFFLAGS", unix.SIOCSIFFLAGS},
		{"IFF_UP", unix.IFF_UP},
		{"SYS_LANDLOCK_CREATE_RULESET", unix.SYS_LANDLOCK_CREATE_RULESET},
		{"SYS_LANDLOCK_ADD_RULE", unix.SYS_LANDLOCK_ADD_RULE},
		{"SYS_LANDLOCK_RESTRICT_SELF", unix.SYS_LANDLOCK_RESTRICT_SELF},
		{"LANDLOCK_RULE_PATH_BENEATH", unix.LANDLOCK_RULE_PATH_BENEATH},
		{"PROXY_VARS", proxyVars},
		{"BASH_ARG_MAX", bashArgMax},
		{"ZYGOTE_MALLOC_ENV", zygoteMallocEnv},
	}
	var b strings.Builder
	b.WriteString("# Generated from Go (zygote_source.go): the constants both paths share.\n")
	for _, c := range list {
		var v string
		switch x := c.value.(type) {
		case string, []string:
			data, err := json.Marshal(x) // JSON strings and lists of them are Python literals
			if err != nil {
				panic(err)
			}
			v = string(data)
		default:
			v = fmt.Sprintf("%#x", x)
		}
		fmt.Fprintf(&b, "%s = %s\n", c.name, v)
	}
	return b.String()
}

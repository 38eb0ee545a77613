package sandbox

import (
	"errors"
	"fmt"
	"os"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// landlockPlan is the Landlock ruleset every sandbox process runs under. The runner
// computes it once for the kernel's ABI; the cold path's init stage applies it in Go
// and each zygote child applies the same plan from Python (zygote.py), so both paths
// enforce the same rules. Landlock adds a second wall behind the mount namespace: even
// a mount left writable or a path reached through /proc cannot be written outside
// the work dir and the tmpfs mounts, and (ABI 6+) a sandbox cannot signal or reach
// the abstract unix sockets of any process outside its own domain.
type landlockPlan struct {
	ABI    int            `json:"abi"`
	FS     uint64         `json:"fs"`     // the file-system rights the ruleset handles
	Scoped uint64         `json:"scoped"` // IPC scopes (ABI 6+)
	Rules  []landlockRule `json:"rules"`
}

// landlockRule grants access beneath path (or to the file path).
type landlockRule struct {
	Path   string `json:"path"`
	Access uint64 `json:"access"`
}

// landlockMaxABI is the newest ABI whose rights this package knows; a newer kernel is
// used at this level (Landlock is backward compatible).
const landlockMaxABI = 7

// landlockFSRights returns the file-system rights Landlock ABI abi can restrict.
func landlockFSRights(abi int) uint64 {
	rights := uint64(ll.AccessFSMakeSym<<1 - 1) // ABI 1: execute … make_sym
	if abi >= 2 {
		rights |= ll.AccessFSRefer
	}
	if abi >= 3 {
		rights |= ll.AccessFSTruncate
	}
	if abi >= 5 {
		rights |= ll.AccessFSIoctlDev
	}
	return rights
}

// Paths inside the sandbox the program may write; everything else is read-only.
var (
	landlockWritableDirs = []string{sandboxWorkDir, "/tmp", "/dev/shm"}
	landlockDevices      = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}
)

// newLandlockPlan returns the plan for Landlock ABI abi, or nil when abi < 1 (the
// kernel has no Landlock; the namespaces and mounts still confine the sandbox).
func newLandlockPlan(abi int) *landlockPlan {
	if abi < 1 {
		return nil
	}
	abi = min(abi, landlockMaxABI)
	fs := landlockFSRights(abi)
	p := &landlockPlan{ABI: abi, FS: fs}
	if abi >= 6 {
		p.Scoped = ll.ScopeAbstractUnixSocket | ll.ScopeSignal
	}
	p.Rules = append(p.Rules, landlockRule{Path: "/", Access: ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSReadDir})
	for _, d := range landlockWritableDirs {
		p.Rules = append(p.Rules, landlockRule{Path: d, Access: fs})
	}
	dev := uint64(ll.AccessFSReadFile|ll.AccessFSWriteFile|ll.AccessFSTruncate|ll.AccessFSIoctlDev) & fs
	for _, d := range landlockDevices {
		p.Rules = append(p.Rules, landlockRule{Path: d, Access: dev})
	}
	return p
}

// landlockABI returns the kernel's Landlock ABI version, 0 when it has none.
func landlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// apply restricts the calling thread, and so the program it executes, to the plan.
// no_new_privs must already be set.
func (p *landlockPlan) apply() error {
	attr := ll.RulesetAttr{HandledAccessFS: p.FS, Scoped: p.Scoped}
	fd, err := ll.LandlockCreateRuleset(&attr, 0)
	if err != nil {
		return &os.SyscallError{Syscall: "landlock_create_ruleset", Err: err}
	}
	defer unix.Close(fd)
	for _, r := range p.Rules {
		if err := addLandlockRule(fd, r); err != nil {
			return err
		}
	}
	if err := ll.LandlockRestrictSelf(fd, 0); err != nil {
		return &os.SyscallError{Syscall: "landlock_restrict_self", Err: err}
	}
	return nil
}

func addLandlockRule(ruleset int, r landlockRule) error {
	fd, err := unix.Open(r.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // nothing there to grant access to
	}
	if err != nil {
		return fmt.Errorf("landlock rule %s: %w", r.Path, err)
	}
	defer unix.Close(fd)
	if err := ll.LandlockAddPathBeneathRule(ruleset, &ll.PathBeneathAttr{AllowedAccess: r.Access, ParentFd: fd}, 0); err != nil {
		return fmt.Errorf("landlock rule %s: %w", r.Path, err)
	}
	return nil
}

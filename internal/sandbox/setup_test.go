package sandbox

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The differences the warm child's setup may have from the cold init's, each with
// its reason. A step of one list that the other lacks, or common steps in another
// order, fail TestSetupStepsMatch unless listed here; an entry no longer needed
// fails it too.
var (
	// coldOnly are steps the warm child does not run itself.
	coldOnly = map[string]string{
		"private_root":   "the zygote's cold init made its mounts private; a child's mount namespace is a copy of the zygote's",
		"mount_dev":      "inherited: the zygote's cold init made /dev, which a child shares",
		"pivot_root":     "inherited: the zygote runs on the image's root already",
		"read_only_root": "inherited: the image and /dev are read-only in the zygote's mounts, and so in a copy of them",
		"hostname":       "inherited: a child's uts namespace is a copy of the zygote's, whose cold init set the name",
		"matplotlib":     "the zygote imported matplotlib with the seeded cache before forking",
		"descriptors":    "a warm interpreter gets a program's code, stdio and report with each run (run.go), not at its start",
	}
	// warmOnly are steps the cold init does not run.
	warmOnly = map[string]string{
		"home":       "sessions only, which are warm: the work dir at /home/user too (SessionOptions.Home)",
		"accounts":   "sessions only, which are warm: the sandbox user named user in /etc/passwd and /etc/group (SessionOptions.Home)",
		"namespaces": "the cold path makes its namespaces at clone (sandboxCloneFlags); a child is forked in the zygote's user namespace and into a pid namespace the zygote made, and unshares the rest",
	}
	// moved are common steps whose place differs.
	moved = map[string]string{
		"close_descriptors": "a child closes what it inherited from the zygote (its control socket above all) before it says a word; the cold init holds only what os/exec gave it, and closes the rest just before exec",
	}
)

// TestSetupStepsMatch holds the warm child's setup steps, as the zygote reports them
// (zygote.py's CHILD_STEPS), to the cold init's (initSteps): the same steps in the same
// order, but for the differences listed above.
func TestSetupStepsMatch(t *testing.T) {
	z, err := sharedRunnerFor(t, "warm").zygote(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	cold, warm := initStepNames(), z.steps
	if len(warm) == 0 {
		t.Fatal("the zygote reported no setup steps")
	}
	used := map[string]bool{}
	var coldCommon, warmCommon []string
	for _, n := range cold {
		switch {
		case slices.Contains(warm, n):
			if moved[n] == "" {
				coldCommon = append(coldCommon, n)
			} else {
				used[n] = true
			}
		case coldOnly[n] != "":
			used[n] = true
		default:
			t.Errorf("the cold init's step %q has no warm counterpart and is not in coldOnly", n)
		}
	}
	for _, n := range warm {
		switch {
		case slices.Contains(cold, n):
			if moved[n] == "" {
				warmCommon = append(warmCommon, n)
			}
		case warmOnly[n] != "":
			used[n] = true
		default:
			t.Errorf("the warm child's step %q has no cold counterpart and is not in warmOnly", n)
		}
	}
	if !slices.Equal(coldCommon, warmCommon) {
		t.Errorf("the common steps differ in order:\ncold %v\nwarm %v", coldCommon, warmCommon)
	}
	for _, table := range []map[string]string{coldOnly, warmOnly, moved} {
		for n := range table {
			if !used[n] {
				t.Errorf("the allowed difference %q is not a difference any more: remove it", n)
			}
		}
	}
	if t.Failed() {
		t.Logf("cold %v\nwarm %v", cold, warm)
	}
}

// TestZygoteConstantsNotCopied: zygote.py assigns none of the names generated from
// Go, and every one of them is used: the Go values are the only copy.
func TestZygoteConstantsNotCopied(t *testing.T) {
	src, err := os.ReadFile("harness/zygote.py")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`(?m)^([A-Z_0-9]+) = `).FindAllStringSubmatch(zygoteConstants(), -1)
	if len(names) < 10 {
		t.Fatalf("zygoteConstants() defines %d names", len(names))
	}
	for _, m := range names {
		name := m[1]
		if regexp.MustCompile(`(?m)^\s*` + name + `\s*=`).Match(src) {
			t.Errorf("zygote.py assigns %s, which zygoteConstants generates from Go", name)
		}
		if !regexp.MustCompile(`\b` + name + `\b`).Match(src) {
			t.Errorf("zygoteConstants generates %s, which zygote.py does not use", name)
		}
	}
	if !strings.HasPrefix(zygoteProgram, "CODEEXEC_ZYGOTE = True\n"+zygoteConstants()) {
		t.Error("the zygote program does not start with the generated constants")
	}
}

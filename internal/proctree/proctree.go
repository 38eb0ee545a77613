// Package proctree lists a process's descendants from /proc. Tests use it to find the
// sandbox processes they started: test binaries run in parallel with sandboxes at the
// same host uids, and only descent tells one binary's apart.
package proctree

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Proc is a process as /proc/<pid>/status shows it.
type Proc struct {
	Pid, PPid, UID int
	Name           string
	Depth          int // 1: a child of the root process, 2: a grandchild, …
}

func (p Proc) String() string {
	return fmt.Sprintf("%d(%s uid %d ppid %d depth %d)", p.Pid, p.Name, p.UID, p.PPid, p.Depth)
}

// Descendants lists the living processes descended from root, parents before their
// children.
func Descendants(root int) []Proc {
	entries, _ := os.ReadDir("/proc")
	all := map[int]Proc{}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProc(pid)
		if !ok {
			continue
		}
		all[pid] = p
		children[p.PPid] = append(children[p.PPid], pid)
	}
	var out []Proc
	var walk func(pid, depth int)
	walk = func(pid, depth int) {
		for _, c := range children[pid] {
			p := all[c]
			p.Depth = depth
			out = append(out, p)
			walk(c, depth+1)
		}
	}
	walk(root, 1)
	return out
}

// readProc reads a process's name, parent and real uid; ok is false once it is gone.
func readProc(pid int) (p Proc, ok bool) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return p, false
	}
	defer f.Close()
	p.Pid = pid
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "Name":
			p.Name = fields[0]
			seen++
		case "PPid":
			p.PPid, _ = strconv.Atoi(fields[0])
			seen++
		case "Uid":
			p.UID, _ = strconv.Atoi(fields[0])
			seen++
		}
	}
	return p, seen == 3
}

package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/job"
	"golang.org/x/sys/unix"
)

// Files the server places in a sandbox (inputs of an execution, uploads into a
// session) live in the sandbox's tmpfs, whose pages the kernel charges to the memory
// cgroup of the process that writes them. Written by the server, they were the
// server's: a session with 16 MiB of memory could hold its whole work dir of uploads,
// and a thousand sessions more than any host has. So the server only opens the files
// (as the sandbox user, through the work dir's os.Root, O_NOFOLLOW) and a writer
// process copies their contents in from a pipe, after the server has placed it in the
// sandbox's memory cgroup; the files then count against the sandbox's own limit.
//
// The writer is this executable re-executed (writerArg0), like the init stage: Go
// cannot fork without exec. It is moved into the group after it starts and before it
// reads a byte (as startInit does), not cloned into it (CLONE_INTO_CGROUP, v2): its
// own start-up memory then stays the server's, and only the files are the sandbox's.
// It moves the data with splice(2), so that nothing but the files' pages is charged.
//
// A write beyond the group's memory limit must fail the upload, not the session. By
// default the kernel answers it with an OOM kill in the group (seen on 6.18, cgroup
// v1), and oom_score_adj 1000 on the writer does not make the writer the victim: the
// kernel ranks by resident size, and a warm interpreter's counts the pages it shares
// with the zygote, several times a small limit. So the OOM killer is paused while
// the writer runs (cgroup.PauseOOMKiller): on v1 the write then fails with ENOMEM and
// nothing is killed. v2 cannot pause it; there the writer's oom_score_adj and the
// headroom check before the write are what is left (see SECURITY.md).
//
// Rejected: moving a locked server thread into the group (v1's tasks file takes
// thread ids). v2's memory controller does not accept threads, and on v1 an OOM kill
// in the group would kill the whole server process. Having the sandbox's own
// interpreter write the files was rejected too: it runs the user's code, which could
// forge or stall the write. A pool of writers started ahead would save the ~3 ms
// a placement spends starting one (this binary's runtime and package init); not
// done yet: idle processes with a lifecycle of their own, for 3 ms.

// writerArg0 marks a re-executed codeexec binary as the writer of input files.
const writerArg0 = "codeexec-sandbox-writer"

// File descriptors of the writer, as numbered in the writer process.
const (
	writerDataFD  = 0 // read: the files' contents, one after the other
	writerFirstFD = 3 // the destination files in order; the executable follows them
)

// writerErrnoBase plus an errno is the writer's exit status when a write failed: an
// exit status needs no memory, while a message on a pipe needs a page, charged to a
// group that may have none left. Any other failure (bad arguments, a crash of the Go
// runtime, which exits with 2) has a status below it.
const writerErrnoBase = 100

// maxWriterFiles bounds the files one writer process takes, one descriptor each.
const maxWriterFiles = 64

// writerTimeout bounds one writer's life. Copying 32 MiB into a tmpfs takes
// milliseconds; a writer that takes this long is stuck (in a frozen cgroup, or in a
// page fault waiting for memory while the OOM killer is paused).
const writerTimeout = 30 * time.Second

// writerSlack is memory the headroom check keeps for the writer beside the files: what
// its runtime touches once in the group, and the cgroup's per-CPU charge batches,
// which make the usage it reads a little stale.
const writerSlack = 2 << 20

// inputWriter places files in one sandbox, charged to its cgroup g.
type inputWriter struct {
	exe    *os.File // the codeexec executable (Runner.self)
	uid    int      // host uid of the sandbox user, which owns the files
	g      *cgroup.Group
	limits job.Limits // the sandbox's: file size, work dir and memory
	log    *slog.Logger
}

// UploadPrefix begins the name of the temporary file a written file is made in
// before it is renamed into place (in the same directory), for watchers that hide
// these steps.
const UploadPrefix = ".codeexec-upload-"

func (r *Runner) inputWriter(g *cgroup.Group, l job.Limits) *inputWriter {
	return &inputWriter{exe: r.self, uid: r.cfg.HostUID + sandboxUID, g: g, limits: l, log: r.log}
}

// place writes files into the work dir root, all or none, if they fit; inputs
// records the placed files. Errors name paths as the sandbox sees them.
func (iw *inputWriter) place(root *os.Root, files []job.InputFile, inputs stamps) error {
	if err := iw.fits(root, files); err != nil {
		return err
	}
	return iw.put(root, files, inputs)
}

// put writes files into the work dir root, all or none: each goes to a temporary
// name in its directory and is renamed over its path once every file is complete;
// on any failure the temporary files and the directories made for them are removed.
func (iw *inputWriter) put(root *os.Root, files []job.InputFile, inputs stamps) error {
	// Paused until the files are in place or gone: a process of the sandbox that
	// waits for memory meanwhile must find the pages of a failed write freed when it
	// wakes, not be killed for them.
	restore, err := iw.g.PauseOOMKiller()
	if err != nil {
		return fmt.Errorf("sandbox: input files: %w", err)
	}
	defer func() {
		if err := restore(); err != nil {
			iw.log.Error("restoring the OOM killer after writing input files", "err", err)
		}
	}()
	st := &staging{root: root, files: files}
	err = asFSUser(iw.uid, st.create)
	if err == nil {
		err = iw.write(st.temps, files)
	}
	st.closeTemps()
	if err == nil {
		err = asFSUser(iw.uid, func() error { return st.commit(inputs) })
	}
	if err != nil {
		_ = asFSUser(iw.uid, st.abort)
	}
	return err
}

// write copies the files' contents into dsts, the open temporary files, from writer
// processes in the sandbox's cgroup.
func (iw *inputWriter) write(dsts []*os.File, files []job.InputFile) error {
	for len(dsts) > 0 {
		n := min(len(dsts), maxWriterFiles)
		if err := iw.writeBatch(dsts[:n], files[:n]); err != nil {
			return err
		}
		dsts, files = dsts[n:], files[n:]
	}
	return nil
}

// fits fails fast, before anything is written, when the files cannot fit: a file
// above the file size limit, more than the work dir has free, or more than the
// sandbox's memory has left. The write itself can still fail (the program allocates
// meanwhile); write reports that as ErrStorageLimit too.
func (iw *inputWriter) fits(root *os.Root, files []job.InputFile) error {
	l := iw.limits
	for _, f := range files {
		if n := int64(len(f.Data)); n > l.FileBytes {
			return storageLimit("input file %q has %s, more than the %s file size limit", f.Path, job.FormatBytes(n), job.FormatBytes(l.FileBytes))
		}
	}
	dir, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("sandbox: open /work: %w", hostFree(err))
	}
	var sfs unix.Statfs_t
	err = unix.Fstatfs(int(dir.Fd()), &sfs)
	dir.Close()
	if err != nil {
		return fmt.Errorf("sandbox: statfs /work: %w", err)
	}
	// A tmpfs file takes whole pages (the file system's block size).
	var need int64
	for _, f := range files {
		need += (int64(len(f.Data)) + sfs.Bsize - 1) / sfs.Bsize * sfs.Bsize
	}
	if free := int64(sfs.Bavail) * sfs.Bsize; need > free {
		return storageLimit("input files need %s, and /work has %s free of its %s", job.FormatBytes(need), job.FormatBytes(free), job.FormatBytes(l.WorkBytes))
	}
	st, _ := iw.g.Stats()
	if free := l.MemoryBytes - st.MemoryBytes - writerSlack; need > free {
		return storageLimit("input files need %s, and the sandbox has %s of its %s memory limit free (files in /work count against it)",
			job.FormatBytes(need), job.FormatBytes(max(free, 0)), job.FormatBytes(l.MemoryBytes))
	}
	return nil
}

func (iw *inputWriter) writeBatch(dsts []*os.File, files []job.InputFile) error {
	dataR, dataW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: input files: %w", err)
	}
	defer dataW.Close()
	// A larger pipe means fewer round trips between the server's write and the
	// writer's splice: 1 MiB is the default pipe-max-size. Only a hint.
	_, _ = unix.FcntlInt(dataW.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	args := []string{writerArg0}
	for _, f := range files {
		args = append(args, strconv.Itoa(len(f.Data)))
	}
	stderr := &capWriter{limit: 4 << 10, onLimit: func() {}}
	cmd := &exec.Cmd{
		Path:   "/proc/self/fd/" + strconv.Itoa(writerFirstFD+len(dsts)),
		Args:   args,
		Env:    []string{},
		Stdin:  dataR,
		Stderr: stderr,
		// ExtraFiles start at fd 3: the files (writerFirstFD...), then the executable.
		ExtraFiles: append(slices.Clip(dsts), iw.exe),
		SysProcAttr: &syscall.SysProcAttr{
			// It needs no privilege: the files are open, and it opens nothing.
			Credential: &syscall.Credential{Uid: uint32(iw.uid), Gid: uint32(iw.uid)},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	oomBefore := iw.oomKillCount()
	err = cmd.Start()
	dataR.Close()
	if err != nil {
		return fmt.Errorf("sandbox: start the input file writer: %w", err)
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(writerTimeout, func() {
		timedOut.Store(true)
		_ = cmd.Process.Kill()
	})
	defer timer.Stop()
	// The writer reads its input before doing anything else: until the first byte
	// arrives it has written nothing, so it is in the group before any file page.
	if err := iw.admit(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	var feedErr error
	for _, f := range files {
		if _, feedErr = dataW.Write(f.Data); feedErr != nil {
			break // the writer is gone; its wait status says why
		}
	}
	dataW.Close()
	waitErr := cmd.Wait()
	if waitErr == nil && feedErr == nil {
		return nil
	}
	if iw.oomKillCount() > oomBefore {
		return storageLimit("input files did not fit in the sandbox's %s memory limit (files in /work count against it)", job.FormatBytes(iw.limits.MemoryBytes))
	}
	if errno, ok := writerErrno(waitErr); ok {
		return iw.writeFailed(errno)
	}
	if timedOut.Load() {
		return fmt.Errorf("sandbox: the input file writer did not finish within %v", writerTimeout)
	}
	// Its stderr is for the server's log only: a crash's trace names host paths.
	iw.log.Error("input file writer failed", "err", waitErr, "feed", feedErr, "stderr", stderr.String())
	return fmt.Errorf("sandbox: the input file writer failed (%v)", waitErr)
}

// admit places the writer, before it has written anything, where its pages are the
// sandbox's; should the group's OOM killer act anyway (v2), the writer is its first
// choice among processes of the same size.
func (iw *inputWriter) admit(pid int) error {
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte("1000"), 0); err != nil {
		return fmt.Errorf("sandbox: input file writer: oom_score_adj: %w", err)
	}
	if err := iw.g.Charge(pid); err != nil {
		return fmt.Errorf("sandbox: input file writer: %w", err)
	}
	return nil
}

func (iw *inputWriter) oomKillCount() int64 {
	st, _ := iw.g.Stats()
	return st.OOMKills
}

// writeFailed explains a write the kernel refused.
func (iw *inputWriter) writeFailed(errno unix.Errno) error {
	l := iw.limits
	switch errno {
	case unix.ENOSPC, unix.EDQUOT:
		return storageLimit("input files do not fit in /work, a %s file system", job.FormatBytes(l.WorkBytes))
	case unix.ENOMEM:
		return storageLimit("input files did not fit in the sandbox's %s memory limit (files in /work count against it)", job.FormatBytes(l.MemoryBytes))
	case unix.EFBIG:
		return storageLimit("an input file exceeds the %s file size limit", job.FormatBytes(l.FileBytes))
	}
	return fmt.Errorf("sandbox: write input files: %w", errno)
}

// writerErrno reads the errno of a failed write from the writer's exit status.
func writerErrno(waitErr error) (unix.Errno, bool) {
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return 0, false
	}
	code := ee.ExitCode()
	if code <= writerErrnoBase {
		return 0, false
	}
	return unix.Errno(code - writerErrnoBase), true
}

// staging is the state of one placement: the temporary files and the directories
// made for them, so that a failure can remove exactly those.
type staging struct {
	root  *os.Root
	files []job.InputFile
	temps []*os.File // open for writing, one per file
	names []string   // the temporary files' paths; "" once renamed into place
	dirs  []string   // directories made for the files, in the order made
}

// create makes each file's directory and an empty temporary file beside its path.
// Run it as the sandbox user.
func (st *staging) create() error {
	for _, f := range st.files {
		if err := st.mkdirs(path.Dir(f.Path)); err != nil {
			return err
		}
		if fi, err := st.root.Lstat(f.Path); err == nil && fi.IsDir() {
			return fmt.Errorf("sandbox: input file %q: a directory of that name exists", f.Path)
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		name := path.Join(path.Dir(f.Path), UploadPrefix+hex.EncodeToString(b[:]))
		t, err := st.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return fmt.Errorf("sandbox: input file %q: %w", f.Path, hostFree(err))
		}
		st.temps = append(st.temps, t)
		st.names = append(st.names, name)
	}
	return nil
}

// mkdirs makes dir and its missing parents, remembering which it made.
func (st *staging) mkdirs(dir string) error {
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		err := st.root.Mkdir(p, 0o755)
		switch {
		case err == nil:
			st.dirs = append(st.dirs, p)
		case errors.Is(err, fs.ErrExist):
			if fi, err := st.root.Stat(p); err != nil || !fi.IsDir() {
				return fmt.Errorf("sandbox: input directory %q: a file of that name exists", p)
			}
		default:
			return fmt.Errorf("sandbox: input directory %q: %w", p, hostFree(err))
		}
	}
	return nil
}

func (st *staging) closeTemps() {
	for _, t := range st.temps {
		t.Close()
	}
}

// commit renames each complete file into place and records it in inputs. Run it
// as the sandbox user. A rename fails only if the path changed since create (a
// session's background process, say); the files renamed before it stay.
func (st *staging) commit(inputs stamps) error {
	for i, f := range st.files {
		if err := st.root.Rename(st.names[i], f.Path); err != nil {
			return fmt.Errorf("sandbox: input file %q: %w", f.Path, hostFree(err))
		}
		st.names[i] = ""
		if fi, err := st.root.Lstat(f.Path); err == nil {
			inputs.add(f.Path, fileStamp{fi.Size(), fi.ModTime().UnixNano()})
		}
	}
	return nil
}

// abort removes the temporary files not yet in place and the directories made for
// them (those still empty). Run it as the sandbox user.
func (st *staging) abort() error {
	for _, n := range st.names {
		if n != "" {
			_ = st.root.Remove(n)
		}
	}
	for _, d := range slices.Backward(st.dirs) {
		_ = st.root.Remove(d)
	}
	return nil
}

// hostFree drops the path from a file system error: files opened through an
// os.Root carry the host's path to the work dir (/proc/<pid>/root/work/…), which is
// none of a client's business. The caller names the path as the sandbox sees it.
func hostFree(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}

// runWriter is the writer process: it copies its input, file after file, into the
// descriptors it was given, then exits. It opens nothing and trusts nothing but its
// arguments, the sizes: the server opened the files and placed this process in the
// sandbox's cgroup before sending the first byte.
func runWriter() {
	sizes := make([]int64, len(os.Args)-1)
	for i, arg := range os.Args[1:] {
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "bad size %q\n", arg)
			os.Exit(1)
		}
		sizes[i] = n
	}
	for i, n := range sizes {
		if errno := copyIn(writerFirstFD+i, n); errno != 0 {
			os.Exit(writerErrnoBase + int(errno))
		}
	}
	os.Exit(0)
}

// copyIn moves n bytes from the data pipe into dst with splice(2): the data never
// enters this process's memory, so all it allocates in the sandbox's group is the
// files' pages. It returns the errno of a failed splice; EPIPE when the input ends
// early.
func copyIn(dst int, n int64) unix.Errno {
	for n > 0 {
		m, err := unix.Splice(writerDataFD, nil, dst, nil, int(min(n, 1<<20)), unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if errno, ok := err.(unix.Errno); ok {
				return errno
			}
			return unix.EIO
		}
		if m == 0 {
			return unix.EPIPE
		}
		n -= m
	}
	return 0
}

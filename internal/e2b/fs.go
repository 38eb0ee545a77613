package e2b

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// envd's filesystem calls are answered by the sandbox's own tools (find, mkdir,
// mv, rm), run as commands of the session, as the sandbox user: any path the
// sandbox shows works (the work dir at /home/user, /tmp, the read-only image), with
// the sandbox's permissions and nothing of the host. Rejected: answering from the
// host's view of the work dir, which knows nothing of /tmp, of empty directories'
// owners or of symlinks as the sandbox resolves them.

// entryInfo is filesystem.EntryInfo as Connect's JSON writes it.
type entryInfo struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Path          string `json:"path"`
	Size          int64  `json:"size,string"`
	Mode          uint32 `json:"mode"`
	Permissions   string `json:"permissions"`
	Owner         string `json:"owner"`
	Group         string `json:"group"`
	ModifiedTime  string `json:"modifiedTime,omitempty"`
	SymlinkTarget string `json:"symlinkTarget,omitempty"`
}

// maxListing bounds the output of a find that lists a directory.
const maxListing = 4 << 20

// findFormat prints an entry's fields for parseEntries, each ended by a NUL byte
// (no name can hold one).
const findFormat = `%y\0%s\0%m\0%M\0%u\0%g\0%T@\0%l\0%p\0`

const findFields = 9

// errNotFound is a path the sandbox does not have.
var errNotFound = errors.New("no such file or directory")

// findEntries returns the entries of p (a clean absolute sandbox path) from depth
// minDepth to maxDepth (0: p itself), sorted by path.
func findEntries(ctx context.Context, sess *session.Session, p string, minDepth, maxDepth int) ([]entryInfo, error) {
	var out, stderr bytes.Buffer
	proc, err := sess.Start(ctx, &sandbox.Command{
		Args:   []string{"find", p, "-mindepth", strconv.Itoa(minDepth), "-maxdepth", strconv.Itoa(maxDepth), "-printf", findFormat},
		Stdout: &limitedBuffer{b: &out, max: maxListing + 1}, Stderr: &limitedBuffer{b: &stderr, max: 4 << 10}})
	if err != nil {
		return nil, err
	}
	st, err := proc.Wait()
	if err != nil {
		return nil, err
	}
	if out.Len() > maxListing {
		return nil, fmt.Errorf("the listing of %q is over %d bytes: list a smaller depth", p, maxListing)
	}
	if st.Code != 0 && out.Len() == 0 {
		if strings.Contains(stderr.String(), "No such file or directory") {
			return nil, errNotFound
		}
		return nil, fmt.Errorf("find: %s", strings.TrimSpace(stderr.String()))
	}
	list := parseEntries(out.String())
	slices.SortFunc(list, func(a, b entryInfo) int { return strings.Compare(a.Path, b.Path) })
	return list, nil
}

// parseEntries reads find's findFormat output.
func parseEntries(out string) []entryInfo {
	f := strings.Split(out, "\x00")
	var list []entryInfo
	for i := 0; i+findFields <= len(f); i += findFields {
		e := entryInfo{Name: path.Base(f[i+8]), Path: e2bName(f[i+8]), Permissions: f[i+3], Owner: f[i+4], Group: f[i+5]}
		switch f[i] {
		case "d":
			e.Type = "FILE_TYPE_DIRECTORY"
		case "l":
			e.Type = "FILE_TYPE_SYMLINK"
		default:
			e.Type = "FILE_TYPE_FILE"
		}
		e.Size, _ = strconv.ParseInt(f[i+1], 10, 64)
		if m, err := strconv.ParseUint(f[i+2], 8, 32); err == nil {
			e.Mode = uint32(m)
		}
		if t, err := strconv.ParseFloat(f[i+6], 64); err == nil {
			sec := int64(t)
			e.ModifiedTime = time.Unix(sec, int64((t-float64(sec))*1e9)).UTC().Format(time.RFC3339Nano)
		}
		if target := f[i+7]; target != "" {
			// envd names a link's target by its absolute path.
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(f[i+8]), target)
			}
			e.SymlinkTarget = e2bName(target)
		}
		list = append(list, e)
	}
	return list
}

// e2bName is a sandbox path as E2B names it: the work dir under /home/user.
func e2bName(p string) string {
	if rel, ok := strings.CutPrefix(p, workDir+"/"); ok {
		return path.Join(e2bHome, rel)
	}
	if p == workDir {
		return e2bHome
	}
	return p
}

// stat1 is the entry of p itself.
func stat1(ctx context.Context, sess *session.Session, p string) (entryInfo, error) {
	list, err := findEntries(ctx, sess, p, 0, 0)
	if err != nil {
		return entryInfo{}, err
	}
	if len(list) != 1 {
		return entryInfo{}, fmt.Errorf("find gave %d entries for %q", len(list), p)
	}
	return list[0], nil
}

// fsError answers err of a call on p in Connect's terms.
func fsError(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, errNotFound):
		connectError(w, "not_found", fmt.Sprintf("path %q does not exist", p))
	case errors.Is(err, sandbox.ErrSessionEnded), errors.Is(err, session.ErrNotFound):
		connectError(w, "unavailable", "the sandbox has ended")
	default:
		connectError(w, "invalid_argument", fmt.Sprintf("%q: %v", p, err))
	}
}

func (s *Server) stat(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path string `json:"path"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	e, err := stat1(r.Context(), sess, sandboxPath(req.Path))
	if err != nil {
		fsError(w, req.Path, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entry": e})
}

func (s *Server) listDir(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path  string `json:"path"`
		Depth int    `json:"depth"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	if req.Depth < 1 {
		req.Depth = 1
	}
	p := sandboxPath(req.Path)
	list, err := findEntries(r.Context(), sess, p, 0, req.Depth)
	if err != nil {
		fsError(w, req.Path, err)
		return
	}
	// The first entry is p itself, the least path.
	if len(list) == 0 || list[0].Type != "FILE_TYPE_DIRECTORY" {
		connectError(w, "invalid_argument", fmt.Sprintf("path %q is not a directory", req.Path))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": list[1:]})
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path string `json:"path"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	p := sandboxPath(req.Path)
	if p == "/" {
		connectError(w, "invalid_argument", "the sandbox's root cannot be removed")
		return
	}
	// As envd's: a path that is not there is removed already.
	if err := runTool(r.Context(), sess, "rm", "-rf", "--", p); err != nil {
		fsError(w, req.Path, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) makeDir(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Path string `json:"path"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	p := sandboxPath(req.Path)
	// E2B answers already_exists for a directory that is there; the SDK maps it
	// to false.
	if _, err := stat1(r.Context(), sess, p); err == nil {
		connectError(w, "already_exists", fmt.Sprintf("%q already exists", req.Path))
		return
	}
	if err := runTool(r.Context(), sess, "mkdir", "-p", "--", p); err != nil {
		fsError(w, req.Path, err)
		return
	}
	e, err := stat1(r.Context(), sess, p)
	if err != nil {
		fsError(w, req.Path, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entry": e})
}

func (s *Server) move(w http.ResponseWriter, r *http.Request, sess *session.Session) {
	var req struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	if !readUnary(w, r, &req) {
		return
	}
	src, dst := sandboxPath(req.Source), sandboxPath(req.Destination)
	if _, err := stat1(r.Context(), sess, src); err != nil {
		fsError(w, req.Source, err)
		return
	}
	if err := runTool(r.Context(), sess, "mv", "-T", "--", src, dst); err != nil {
		fsError(w, req.Destination, err)
		return
	}
	e, err := stat1(r.Context(), sess, dst)
	if err != nil {
		fsError(w, req.Destination, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entry": e})
}

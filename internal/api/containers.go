package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/jsonerr"
	"github.com/codeexec/codeexec/internal/openairesponses"
	"github.com/codeexec/codeexec/internal/session"
)

// OpenAI's Containers API as a view of the sessions: a container id IS the id of
// a session of the caller's tenant, so that a container made here is the
// "container" of a code_interpreter tool, and the session routes see it too; a
// container file's id is openairesponses.FileID of its path, as the answers'
// citations name it. Only the container's name is kept beside the session.

// Container is a container object.
type Container struct {
	ID           string       `json:"id"`
	Object       string       `json:"object"`
	CreatedAt    int64        `json:"created_at"`
	Status       string       `json:"status"`
	ExpiresAfter ExpiresAfter `json:"expires_after"`
	LastActiveAt int64        `json:"last_active_at"`
	Name         string       `json:"name"`
	// MemoryLimit is the memory_limit the container was made with, if any.
	MemoryLimit string `json:"memory_limit,omitempty"`
}

// ExpiresAfter is when a container expires: minutes after its last use.
type ExpiresAfter struct {
	Anchor  string `json:"anchor"`
	Minutes int64  `json:"minutes"`
}

// ContainerFile is a container.file object.
type ContainerFile struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	ContainerID string `json:"container_id"`
	Bytes       int64  `json:"bytes"`
	Path        string `json:"path"`
	Source      string `json:"source,omitempty"`
}

// ListPage is a page of a list, as OpenAI's lists are (the whole list is one page).
type ListPage[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func listPage[T any](data []T, id func(T) string) ListPage[T] {
	p := ListPage[T]{Object: "list", Data: data}
	if len(data) > 0 {
		first, last := id(data[0]), id(data[len(data)-1])
		p.FirstID, p.LastID = &first, &last
	}
	return p
}

// containerNames are the names containers were made with, by session id. The
// name of a session that ended is dropped at the next create, so that the table
// holds no more entries than there are sessions, plus one.
type containerNames struct {
	mu   sync.Mutex
	byID map[string]ownedName
}

type ownedName struct{ owner, name, memory string }

// set names owner's session id (and keeps its memory_limit), after dropping the
// names of the sessions that ended.
func (n *containerNames) set(m *session.Manager, owner, id, name, memory string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byID == nil {
		n.byID = map[string]ownedName{}
	}
	for id, o := range n.byID {
		if _, err := m.Get(o.owner, id); err != nil {
			delete(n.byID, id)
		}
	}
	n.byID[id] = ownedName{owner, name, memory}
}

func (n *containerNames) get(id string) ownedName {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byID[id]
}

func (s *Server) container(sess *session.Session) Container {
	info := sess.Info()
	status := "running"
	if !info.Alive {
		status = "expired"
	}
	minutes := int64(math.Round(info.ExpiresAt.Sub(info.LastUsedAt).Minutes()))
	n := s.containerNames.get(info.ID)
	return Container{ID: info.ID, Object: "container", CreatedAt: info.CreatedAt.Unix(), Status: status,
		ExpiresAfter: ExpiresAfter{Anchor: "last_active_at", Minutes: minutes}, LastActiveAt: info.LastUsedAt.Unix(), Name: n.name, MemoryLimit: n.memory}
}

// createContainerRequest is the body of POST /v1/containers.
type createContainerRequest struct {
	Name         string        `json:"name"`
	ExpiresAfter *ExpiresAfter `json:"expires_after"`
	FileIDs      []string      `json:"file_ids"`
	MemoryLimit  string        `json:"memory_limit"`
}

// containerMemory are the memory_limit values of OpenAI's containers.
var containerMemory = map[string]int64{"1g": 1 << 30, "4g": 4 << 30, "16g": 16 << 30, "64g": 64 << 30}

// containerLimits are the limits of a new container with memory_limit m ("": the
// server's default limits): m becomes the session's memory limit, within the
// operator's max_memory.
func (s *Server) containerLimits(m string) (job.Limits, *requestError) {
	l := s.cfg.Policy.Default
	if m == "" {
		return l, nil
	}
	n, ok := containerMemory[m]
	if !ok {
		return l, badRequest("invalid_memory_limit", `"memory_limit" must be "1g", "4g", "16g" or "64g", got %q`, m)
	}
	if max := s.cfg.Policy.Max.MemoryBytes; n > max {
		return l, badRequest("memory_limit_too_high", `"memory_limit" %q is above this server's most for a container, %d MiB (its max_memory)`, m, max>>20)
	}
	l.MemoryBytes = n
	return l, nil
}

func (s *Server) handleCreateContainer(w http.ResponseWriter, r *http.Request) {
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	// An OpenAI body: fields codeexec does not know are left alone, as in the gateway.
	var req createContainerRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body: "+jsonerr.Describe(err, &req))
		return
	}
	limits, lerr := s.containerLimits(req.MemoryLimit)
	if lerr != nil {
		writeRequestError(w, lerr)
		return
	}
	owner := tenantOf(r)
	files, err := s.uploadedFiles(owner.Name, req.FileIDs)
	if err != nil {
		writeError(w, http.StatusNotFound, "file_not_found", err.Error())
		return
	}
	var ttl time.Duration
	if e := req.ExpiresAfter; e != nil {
		if e.Anchor != "last_active_at" || e.Minutes <= 0 || e.Minutes > math.MaxInt64/int64(time.Minute) {
			writeError(w, http.StatusBadRequest, "invalid_expires_after",
				fmt.Sprintf(`"expires_after" must be {"anchor": "last_active_at", "minutes": N} with N > 0, got anchor %q and %d minutes`, e.Anchor, e.Minutes))
			return
		}
		ttl = time.Duration(e.Minutes) * time.Minute
	}
	sess, err := s.sessions.Create(r.Context(), owner, limits, ttl)
	if err != nil {
		writeSessionError(w, "", err)
		return
	}
	for _, f := range files {
		if err := sess.WriteFile(f.name, f.data); err != nil {
			// No container without the files it was made with.
			_ = s.sessions.Delete(owner.Name, sess.ID)
			writeFileError(w, f.name, err)
			return
		}
	}
	s.containerNames.set(s.sessions, owner.Name, sess.ID, req.Name, req.MemoryLimit)
	writeJSON(w, http.StatusOK, s.container(sess))
}

func (s *Server) handleListContainers(w http.ResponseWriter, r *http.Request) {
	list := []Container{}
	for _, sess := range s.sessions.List(tenantOf(r).Name) {
		list = append(list, s.container(sess))
	}
	writeJSON(w, http.StatusOK, listPage(list, func(c Container) string { return c.ID }))
}

func (s *Server) handleGetContainer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess, err := s.sessions.Get(tenantOf(r).Name, id)
	if err != nil {
		writeContainerError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, s.container(sess))
}

func (s *Server) handleDeleteContainer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.sessions.Delete(tenantOf(r).Name, id); err != nil {
		writeContainerError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "container.deleted", "deleted": true})
}

// containerFile finds the container and the path of the file a route names by
// its id, as the session file routes take it, or answers the error itself.
func (s *Server) containerFile(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	p, ok := openairesponses.FilePath(r.PathValue("file_id"))
	if !ok {
		writeError(w, http.StatusNotFound, "file_not_found", fmt.Sprintf("no file %q: a container file's id is cfile_… (from the container's file list or a citation)", r.PathValue("file_id")))
		return nil, false
	}
	r.SetPathValue("path", p)
	return r, true
}

// handleCreateContainerFile puts a file in the container: a multipart upload of
// "file", named by its filename, or {"file_id"} naming a file of /v1/files.
func (s *Server) handleCreateContainerFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	owner := tenantOf(r)
	sess, err := s.sessions.Get(owner.Name, id)
	if err != nil {
		writeContainerError(w, id, err)
		return
	}
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	var name string
	var data []byte
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "multipart/form-data":
		if name, data, err = uploadedFile(body, params["boundary"]); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_file", err.Error())
			return
		}
	default:
		var req struct {
			FileID string `json:"file_id"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.FileID == "" {
			writeError(w, http.StatusBadRequest, "invalid_file",
				`upload the file as multipart/form-data with a "file" part, or name a file of /v1/files as {"file_id": "file-…"}`)
			return
		}
		files, err := s.uploadedFiles(owner.Name, []string{req.FileID})
		if err != nil {
			writeError(w, http.StatusNotFound, "file_not_found", err.Error())
			return
		}
		name, data = files[0].name, files[0].data
	}
	p, err := job.CleanInputPath(name)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_file_path", err.Error())
		return
	}
	if err := sess.WriteFile(p, data); err != nil {
		writeFileError(w, p, err)
		return
	}
	writeJSON(w, http.StatusOK, ContainerFile{ID: openairesponses.FileID(p), Object: "container.file", ContainerID: id,
		Bytes: int64(len(data)), Path: p, Source: "user"})
}

// uploadedFile is the "file" part of a multipart body: its filename and bytes.
func uploadedFile(body []byte, boundary string) (string, []byte, error) {
	if boundary == "" {
		return "", nil, fmt.Errorf("the multipart body has no boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if err != nil {
			return "", nil, fmt.Errorf(`the multipart body has no "file" part: %w`, err)
		}
		if part.FormName() != "file" {
			continue
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(part); err != nil {
			return "", nil, fmt.Errorf(`read the "file" part: %w`, err)
		}
		if part.FileName() == "" {
			return "", nil, fmt.Errorf(`the "file" part has no filename`)
		}
		return part.FileName(), buf.Bytes(), nil
	}
}

func (s *Server) handleListContainerFiles(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess, err := s.sessions.Get(tenantOf(r).Name, id)
	if err != nil {
		writeContainerError(w, id, err)
		return
	}
	files, truncated, err := sess.Files()
	if err != nil {
		writeFileError(w, "", err)
		return
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	list := []ContainerFile{}
	for _, f := range files {
		list = append(list, ContainerFile{ID: openairesponses.FileID(f.Path), Object: "container.file", ContainerID: id, Bytes: f.Size, Path: f.Path})
	}
	page := listPage(list, func(f ContainerFile) string { return f.ID })
	// The session lists a bounded number of files: more were left out.
	page.HasMore = truncated
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) handleGetContainerFile(w http.ResponseWriter, r *http.Request) {
	r, ok := s.containerFile(w, r)
	if !ok {
		return
	}
	sess, p, ok := s.sessionFile(w, r)
	if !ok {
		return
	}
	files, _, err := sess.Files()
	if err != nil {
		writeFileError(w, p, err)
		return
	}
	for _, f := range files {
		if f.Path == p {
			writeJSON(w, http.StatusOK, ContainerFile{ID: openairesponses.FileID(p), Object: "container.file", ContainerID: sess.ID, Bytes: f.Size, Path: p})
			return
		}
	}
	writeError(w, http.StatusNotFound, "file_not_found", fmt.Sprintf("no file %q in the container", p))
}

func (s *Server) handleContainerFileContent(w http.ResponseWriter, r *http.Request) {
	if r, ok := s.containerFile(w, r); ok {
		s.handleGetFile(w, r)
	}
}

func (s *Server) handleDeleteContainerFile(w http.ResponseWriter, r *http.Request) {
	r, ok := s.containerFile(w, r)
	if !ok {
		return
	}
	sess, p, ok := s.sessionFile(w, r)
	if !ok {
		return
	}
	if err := sess.RemoveFile(p); err != nil {
		writeFileError(w, p, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("file_id"), "object": "container.file.deleted", "deleted": true})
}

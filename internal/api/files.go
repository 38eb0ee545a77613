package api

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/job"
)

// OpenAI's Files API, for the file_ids of a code tool's container, of
// POST /v1/containers and of input_file parts. The files are kept in memory, not
// on disk: they live as long as the server or until deleted (or their
// expires_after), like the responses kept for previous_response_id, and a restart
// forgets both; a disk store would need its own cleanup and quota accounting
// beside the sandboxes' storage for no client that needs a file to outlive the
// server. Each tenant's files together are bounded (Config.MaxFileStorage), so
// that the memory they take is at most that bound times the tenants, which the
// keys file fixes.

// maxFilesPerTenant bounds the number of a tenant's files, so that empty files
// cannot grow the table without bound under the byte quota.
const maxFilesPerTenant = 10000

// filePurposes are the purposes OpenAI's files take; codeexec keeps the purpose
// and serves every file the same way.
var filePurposes = []string{"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}

// FileObject is a file object of the Files API.
type FileObject struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt *int64 `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"`
}

type storedFile struct {
	owner   string
	obj     FileObject
	data    []byte
	expires time.Time // zero: never
}

// fileStore holds the uploaded files of every tenant.
type fileStore struct {
	mu       sync.Mutex
	maxBytes int64 // per tenant; 0: no bound
	byID     map[string]*storedFile
	used     map[string]int64 // bytes by tenant
	count    map[string]int   // files by tenant
	expiring int              // files with an expiry, which expire scans for
}

func newFileStore(maxBytes int64) *fileStore {
	return &fileStore{maxBytes: maxBytes, byID: map[string]*storedFile{}, used: map[string]int64{}, count: map[string]int{}}
}

// errFileQuota is a tenant's files at their bound.
type errFileQuota struct{ msg string }

func (e *errFileQuota) Error() string { return e.msg }

// put stores f for its owner unless that takes the owner's files past the bounds.
func (s *fileStore) put(f *storedFile, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	n := int64(len(f.data))
	if s.maxBytes > 0 && s.used[f.owner]+n > s.maxBytes {
		return &errFileQuota{fmt.Sprintf("the file (%d bytes) does not fit: your files take %d of the %d bytes each API key's tenant may keep; delete some with DELETE /v1/files/{id}",
			n, s.used[f.owner], s.maxBytes)}
	}
	if s.count[f.owner] >= maxFilesPerTenant {
		return &errFileQuota{fmt.Sprintf("your tenant keeps %d files, the most it may; delete some with DELETE /v1/files/{id}", maxFilesPerTenant)}
	}
	s.byID[f.obj.ID] = f
	s.used[f.owner] += n
	s.count[f.owner]++
	if !f.expires.IsZero() {
		s.expiring++
	}
	return nil
}

// get returns owner's file id, or nil when it is another tenant's, expired or
// never existed.
func (s *fileStore) get(owner, id string, now time.Time) *storedFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	f := s.byID[id]
	if f == nil || f.owner != owner {
		return nil
	}
	return f
}

func (s *fileStore) list(owner string, now time.Time) []*storedFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	var out []*storedFile
	for _, f := range s.byID {
		if f.owner == owner {
			out = append(out, f)
		}
	}
	return out
}

func (s *fileStore) delete(owner, id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	f := s.byID[id]
	if f == nil || f.owner != owner {
		return false
	}
	s.remove(f)
	return true
}

func (s *fileStore) remove(f *storedFile) {
	delete(s.byID, f.obj.ID)
	if !f.expires.IsZero() {
		s.expiring--
	}
	s.used[f.owner] -= int64(len(f.data))
	s.count[f.owner]--
	if s.count[f.owner] == 0 {
		delete(s.used, f.owner)
		delete(s.count, f.owner)
	}
}

// expire drops the files whose expires_after has passed: a scan of the bounded
// table, and none while no file has an expiry.
func (s *fileStore) expire(now time.Time) {
	if s.expiring == 0 {
		return
	}
	for _, f := range s.byID {
		if !f.expires.IsZero() && !now.Before(f.expires) {
			s.remove(f)
		}
	}
}

// multipartForm reads a multipart body: its "file" part (name and bytes) and its
// other fields' values.
func multipartForm(body []byte, contentType string) (name string, data []byte, fields map[string]string, err error) {
	mediaType, params, _ := mime.ParseMediaType(contentType)
	if mediaType != "multipart/form-data" {
		return "", nil, nil, fmt.Errorf(`the body must be multipart/form-data with a "file" part, not %q`, mediaType)
	}
	if params["boundary"] == "" {
		return "", nil, nil, fmt.Errorf("the multipart body has no boundary")
	}
	fields = map[string]string{}
	found := false
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, nil, fmt.Errorf("read the multipart body: %w", err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(part); err != nil {
			return "", nil, nil, fmt.Errorf("read the %q part: %w", part.FormName(), err)
		}
		if part.FormName() != "file" {
			fields[part.FormName()] = buf.String()
			continue
		}
		if part.FileName() == "" {
			return "", nil, nil, fmt.Errorf(`the "file" part has no filename`)
		}
		name, data, found = part.FileName(), buf.Bytes(), true
	}
	if !found {
		return "", nil, nil, fmt.Errorf(`the multipart body has no "file" part`)
	}
	return name, data, fields, nil
}

func (s *Server) handleCreateFile(w http.ResponseWriter, r *http.Request) {
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	name, data, fields, err := multipartForm(body, r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_file", err.Error())
		return
	}
	purpose := fields["purpose"]
	if !slices.Contains(filePurposes, purpose) {
		writeError(w, http.StatusBadRequest, "invalid_purpose", fmt.Sprintf(`"purpose" must be one of %s, got %q`, strings.Join(filePurposes, ", "), purpose))
		return
	}
	now := time.Now()
	f := &storedFile{owner: tenantOf(r).Name, data: data, obj: FileObject{ID: s.fileID(), Object: "file", Bytes: int64(len(data)),
		CreatedAt: now.Unix(), Filename: name, Purpose: purpose, Status: "processed"}}
	if anchor, ok := fields["expires_after[anchor]"]; ok || fields["expires_after[seconds]"] != "" {
		secs, err := strconv.ParseInt(fields["expires_after[seconds]"], 10, 64)
		// OpenAI's bounds: an hour to 30 days after the upload.
		if anchor != "created_at" || err != nil || secs < 3600 || secs > 30*86400 {
			writeError(w, http.StatusBadRequest, "invalid_expires_after", fmt.Sprintf(
				`"expires_after" must be anchor "created_at" and seconds from 3600 to 2592000, got anchor %q and seconds %q`, anchor, fields["expires_after[seconds]"]))
			return
		}
		f.expires = now.Add(time.Duration(secs) * time.Second)
		at := f.expires.Unix()
		f.obj.ExpiresAt = &at
	}
	if err := s.files.put(f, now); err != nil {
		// 400, not 507: a tenant at its quota must delete files, and the SDKs retry
		// a 5xx.
		writeError(w, http.StatusBadRequest, "file_storage_limit", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, f.obj)
}

func (s *Server) handleListUploadedFiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	files := s.files.list(tenantOf(r).Name, time.Now())
	order := q.Get("order")
	if order == "" {
		order = "desc"
	}
	if order != "asc" && order != "desc" {
		writeError(w, http.StatusBadRequest, "invalid_order", fmt.Sprintf(`"order" must be "asc" or "desc", got %q`, order))
		return
	}
	limit := maxFilesPerTenant
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxFilesPerTenant {
			writeError(w, http.StatusBadRequest, "invalid_limit", fmt.Sprintf(`"limit" must be a number from 1 to %d, got %q`, maxFilesPerTenant, v))
			return
		}
		limit = n
	}
	// Ties of the creation second are broken by id, so that "after" pages are stable.
	slices.SortFunc(files, func(a, b *storedFile) int {
		if a.obj.CreatedAt != b.obj.CreatedAt {
			return int(a.obj.CreatedAt - b.obj.CreatedAt)
		}
		return strings.Compare(a.obj.ID, b.obj.ID)
	})
	if order == "desc" {
		slices.Reverse(files)
	}
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(files, func(f *storedFile) bool { return f.obj.ID == after })
		files = files[i+1:] // an unknown id (-1) lists from the start
	}
	purpose := q.Get("purpose")
	list := []FileObject{}
	more := false
	for _, f := range files {
		if purpose != "" && f.obj.Purpose != purpose {
			continue
		}
		if len(list) == limit {
			more = true
			break
		}
		list = append(list, f.obj)
	}
	page := listPage(list, func(f FileObject) string { return f.ID })
	page.HasMore = more
	writeJSON(w, http.StatusOK, page)
}

// uploaded finds the caller's file the route names, or answers 404 itself.
func (s *Server) uploaded(w http.ResponseWriter, r *http.Request) (*storedFile, bool) {
	id := r.PathValue("file_id")
	f := s.files.get(tenantOf(r).Name, id, time.Now())
	if f == nil {
		writeError(w, http.StatusNotFound, "file_not_found", fmt.Sprintf("no file %q: it was deleted, expired, never existed, or the server restarted (files are kept in memory)", id))
		return nil, false
	}
	return f, true
}

func (s *Server) handleGetUploadedFile(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.uploaded(w, r); ok {
		writeJSON(w, http.StatusOK, f.obj)
	}
}

func (s *Server) handleUploadedFileContent(w http.ResponseWriter, r *http.Request) {
	f, ok := s.uploaded(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.obj.Filename}))
	_, _ = w.Write(f.data)
}

func (s *Server) handleDeleteUploadedFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("file_id")
	if !s.files.delete(tenantOf(r).Name, id, time.Now()) {
		writeError(w, http.StatusNotFound, "file_not_found", fmt.Sprintf("no file %q", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "deleted": true})
}

// namedFile is an uploaded file as it goes into a sandbox: under a name of its
// work dir.
type namedFile struct {
	name string
	data []byte
}

// uploadedFiles resolves owner's file ids for a container, each named by its
// filename (cleaned to a name of the work dir; two different files of one name
// become "a.csv" and "a-2.csv"). Its error names the first id that is not owner's.
func (s *Server) uploadedFiles(owner string, ids []string) ([]namedFile, error) {
	names := map[string][sha256.Size]byte{}
	var out []namedFile
	for i, id := range ids {
		f := s.files.get(owner, id, time.Now())
		if f == nil {
			return nil, fmt.Errorf("file_ids[%d]: no file %q: upload it with POST /v1/files first (files are kept in memory: a restart forgets them)", i, id)
		}
		name, err := workName(f.obj.Filename)
		if err != nil {
			return nil, fmt.Errorf("file_ids[%d]: file %q: %w", i, id, err)
		}
		out = append(out, namedFile{name: agent.UniqueName(name, sha256.Sum256(f.data), names), data: f.data})
	}
	return out, nil
}

// workName is a file's name in a sandbox's work dir: the last element of its
// filename.
func workName(filename string) (string, error) {
	name := path.Base(strings.ReplaceAll(filename, `\`, "/"))
	return job.CleanInputPath(name)
}

// fileID is a new upload's id: OpenAI's "file-…" on a lone server; in a cluster
// one that names this replica, so that a request for it is routed here.
func (s *Server) fileID() string {
	if s.replica == "" {
		return "file-" + newID()
	}
	return cluster.ID("file", s.replica, newID())
}

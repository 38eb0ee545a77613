package api

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"testing"
	"time"
)

// upload posts a multipart /v1/files body: a "file" part named name (if name is
// not "") and the fields.
func upload(t *testing.T, url, key, name, content string, fields ...string) response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	if name != "" {
		fw, err := mw.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write([]byte(content))
	}
	_ = mw.Close()
	return do(t, "POST", url+"/v1/files", body.String(), "Content-Type", mw.FormDataContentType(), "Authorization", "Bearer "+key)
}

func decodeFile(t *testing.T, r response) FileObject {
	t.Helper()
	var f FileObject
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &f); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return f
}

// TestFilesAPI: upload, list, retrieve, content and delete, each tenant seeing
// only its own files, within its quota.
func TestFilesAPI(t *testing.T) {
	hs := contractServer(t, nil, nil, func(c *Config) {
		c.APIKeys = []string{"key-a", "key-b"}
		c.MaxFileStorage = 10
	})
	auth := func(key string) []string { return []string{"Authorization", "Bearer " + key} }

	f := decodeFile(t, upload(t, hs.URL, "key-a", "data.csv", "n\n1\n2\n", "purpose", "user_data"))
	if f.Object != "file" || f.Bytes != 6 || f.Filename != "data.csv" || f.Purpose != "user_data" || f.Status != "processed" || f.CreatedAt == 0 || len(f.ID) < 10 {
		t.Errorf("upload: %+v", f)
	}
	got := decodeFile(t, do(t, "GET", hs.URL+"/v1/files/"+f.ID, "", auth("key-a")...))
	if got != f {
		t.Errorf("retrieve: %+v, want %+v", got, f)
	}
	if r := do(t, "GET", hs.URL+"/v1/files/"+f.ID+"/content", "", auth("key-a")...); r.status != 200 || string(r.body) != "n\n1\n2\n" {
		t.Errorf("content: %d %q", r.status, r.body)
	}
	var list ListPage[FileObject]
	if r := do(t, "GET", hs.URL+"/v1/files?purpose=user_data", "", auth("key-a")...); json.Unmarshal(r.body, &list) != nil || len(list.Data) != 1 || list.Data[0].ID != f.ID {
		t.Errorf("list: %s", r.body)
	}
	// Another tenant sees nothing of it.
	wantError(t, "GET another tenant's file", do(t, "GET", hs.URL+"/v1/files/"+f.ID, "", auth("key-b")...), 404, "file_not_found")
	wantError(t, "DELETE another tenant's file", do(t, "DELETE", hs.URL+"/v1/files/"+f.ID, "", auth("key-b")...), 404, "file_not_found")
	if r := do(t, "GET", hs.URL+"/v1/files", "", auth("key-b")...); json.Unmarshal(r.body, &list) != nil || len(list.Data) != 0 {
		t.Errorf("another tenant's list: %s", r.body)
	}
	// The quota is per tenant: 6 of 10 bytes are a's.
	wantError(t, "upload past the quota", upload(t, hs.URL, "key-a", "more.txt", "12345", "purpose", "assistants"), 400, "file_storage_limit")
	decodeFile(t, upload(t, hs.URL, "key-b", "more.txt", "12345", "purpose", "assistants"))
	for _, tc := range []struct {
		name   string
		r      response
		status int
		code   string
	}{
		{"no purpose", upload(t, hs.URL, "key-a", "a.txt", "x"), 400, "invalid_purpose"},
		{"unknown purpose", upload(t, hs.URL, "key-a", "a.txt", "x", "purpose", "training"), 400, "invalid_purpose"},
		{"no file part", upload(t, hs.URL, "key-a", "", "", "purpose", "assistants"), 400, "invalid_file"},
		{"bad expiry", upload(t, hs.URL, "key-a", "a.txt", "x", "purpose", "assistants", "expires_after[anchor]", "created_at", "expires_after[seconds]", "60"), 400, "invalid_expires_after"},
		{"JSON body", do(t, "POST", hs.URL+"/v1/files", `{"purpose":"assistants"}`, auth("key-a")...), 400, "invalid_file"},
		{"unknown file", do(t, "GET", hs.URL+"/v1/files/file-nope/content", "", auth("key-a")...), 404, "file_not_found"},
	} {
		wantError(t, tc.name, tc.r, tc.status, tc.code)
	}
	// Deleted, the file is gone and its bytes are free again.
	if r := do(t, "DELETE", hs.URL+"/v1/files/"+f.ID, "", auth("key-a")...); r.status != 200 || !bytes.Contains(r.body, []byte(`"deleted":true`)) {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	wantError(t, "GET a deleted file", do(t, "GET", hs.URL+"/v1/files/"+f.ID, "", auth("key-a")...), 404, "file_not_found")
	decodeFile(t, upload(t, hs.URL, "key-a", "more.txt", "12345", "purpose", "assistants"))
}

// TestFileStoreExpiry: a file with expires_after is gone after it, and its bytes
// are free again.
func TestFileStoreExpiry(t *testing.T) {
	s := newFileStore(10)
	now := time.Unix(1000, 0)
	keep := &storedFile{owner: "a", data: []byte("12345"), obj: FileObject{ID: "file-keep"}}
	brief := &storedFile{owner: "a", data: []byte("12345"), obj: FileObject{ID: "file-brief"}, expires: now.Add(time.Hour)}
	for _, f := range []*storedFile{keep, brief} {
		if err := s.put(f, now); err != nil {
			t.Fatal(err)
		}
	}
	if s.get("a", "file-brief", now.Add(time.Hour-time.Second)) == nil {
		t.Errorf("the file expired early")
	}
	later := now.Add(time.Hour)
	if s.get("a", "file-brief", later) != nil || s.get("a", "file-keep", later) == nil {
		t.Errorf("after its expiry: the file is there %v, the other %v", s.get("a", "file-brief", later) != nil, s.get("a", "file-keep", later) != nil)
	}
	if err := s.put(&storedFile{owner: "a", data: []byte("12345"), obj: FileObject{ID: "file-new"}}, later); err != nil {
		t.Errorf("the expired file's bytes are not free: %v", err)
	}
}

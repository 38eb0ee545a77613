package gateway_test

// Files of /v1/files in the sandbox: a code tool's container with file_ids, an
// input_file part naming a file_id, a container of /v1/containers made with
// file_ids; and a container's memory_limit.

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/test/testenv"
)

// uploadFile posts content as a /v1/files file named name and returns its id.
func uploadFile(t *testing.T, url, name, content string) string {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", "user_data")
	fw, _ := mw.CreateFormFile("file", name)
	_, _ = fw.Write([]byte(content))
	_ = mw.Close()
	resp, err := http.Post(url+"/v1/files", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var f struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(data, &f) != nil || f.ID == "" {
		t.Fatalf("upload %s: %d %s", name, resp.StatusCode, data)
	}
	return f.ID
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(data, v) != nil {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, data)
	}
}

const sumCSV = "import pandas as pd\nprint(pd.read_csv('data.csv')['n'].sum())"

// TestResponsesFileIDs: the code finds the uploaded files of the container's
// file_ids and of an input_file part in its work dir, and the model is told their
// names; the container has the memory it asked for.
func TestResponsesFileIDs(t *testing.T) {
	up, hs := testenvFake(t,
		llmtest.Calls(code(sumCSV)), llmtest.Text("3"),
		llmtest.Calls(code(sumCSV)), llmtest.Text("3"),
		llmtest.Calls(code(sumCSV)), llmtest.Text("3"),
		llmtest.Text("You're welcome."),
	)
	id := uploadFile(t, hs.URL, "data.csv", "n\n1\n2\n")
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"sum n","include":["code_interpreter_call.outputs"],
		"tools":[{"type":"code_interpreter","container":{"type":"auto","file_ids":["`+id+`"],"memory_limit":"1g"}}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r := decodeResponse(t, data)
	run := r.Output[0]
	if run.Outputs == nil || (*run.Outputs)[0].Logs != "3\n" {
		t.Errorf("the code did not read data.csv of file_ids: %s", data)
	}
	if reqs := up.ChatRequests(); len(reqs) == 0 || !strings.Contains(asText(reqs[0]), "These files are in /work: data.csv.") {
		t.Errorf("the model was not told of data.csv")
	}
	if !bigAlloc(t, hs.URL, run.ContainerID) {
		t.Errorf("memory_limit 1g: the container's code could not fill 700 MiB")
	}

	status, data = postResponses(t, hs.URL, `{"model":"fake-model","include":["code_interpreter_call.outputs"],"tools":[{"type":"code_interpreter"}],
		"input":[{"role":"user","content":[{"type":"input_text","text":"sum n"},{"type":"input_file","file_id":"`+id+`"}]}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r2 := decodeResponse(t, data)
	if r2.Output[0].Outputs == nil || (*r2.Output[0].Outputs)[0].Logs != "3\n" {
		t.Errorf("the code did not read data.csv of an input_file part: %s", data)
	}

	// The chat gateway's file parts take a file_id too.
	status, data = post(t, hs.URL, `{"model":"fake-model",`+codeTool+`,
		"messages":[{"role":"user","content":[{"type":"text","text":"sum n"},{"type":"file","file":{"file_id":"`+id+`"}}]}]}`)
	if status != 200 || !strings.Contains(string(data), `"stdout":"3\n"`) {
		t.Errorf("chat with a file_id part: %d %s", status, data)
	}

	// Deleted from the uploads, the file of an earlier turn does not end the
	// conversation.
	req, _ := http.NewRequest("DELETE", hs.URL+"/v1/files/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("delete the file: %d", resp.StatusCode)
	}
	status, data = postResponses(t, hs.URL, `{"model":"fake-model","input":"thanks","previous_response_id":"`+r2.ID+`","tools":[{"type":"code_interpreter"}]}`)
	if status != 200 || !strings.Contains(asText(up.ChatRequests()[len(up.ChatRequests())-1]), "has been deleted from the uploads since") {
		t.Errorf("a follow-up after the file was deleted: %d %s", status, data)
	}
}

// TestContainerFileIDs: POST /v1/containers with file_ids and memory_limit, and a
// response whose code runs there, with that memory.
func TestContainerFileIDs(t *testing.T) {
	_, hs := testenvFake(t, llmtest.Calls(code(sumCSV)), llmtest.Text("3"))
	id := uploadFile(t, hs.URL, "data.csv", "n\n1\n2\n")
	resp, err := http.Post(hs.URL+"/v1/containers", "application/json", strings.NewReader(`{"name":"c","file_ids":["`+id+`"],"memory_limit":"4g"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var c struct {
		ID          string `json:"id"`
		MemoryLimit string `json:"memory_limit"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(data, &c) != nil || c.MemoryLimit != "4g" {
		t.Fatalf("create: %d %s", resp.StatusCode, data)
	}
	var files struct {
		Data []struct {
			Path  string `json:"path"`
			Bytes int    `json:"bytes"`
		} `json:"data"`
	}
	// A file of /v1/files added by its id.
	other := uploadFile(t, hs.URL, "notes.txt", "hello")
	for _, tc := range []struct {
		id     string
		status int
	}{{other, 200}, {"file-nope", 404}} {
		resp, err := http.Post(hs.URL+"/v1/containers/"+c.ID+"/files", "application/json", strings.NewReader(`{"file_id":"`+tc.id+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("containers.files.create with file_id %s: %d %s, want %d", tc.id, resp.StatusCode, data, tc.status)
		}
	}
	getJSON(t, hs.URL+"/v1/containers/"+c.ID+"/files", &files)
	if len(files.Data) != 2 || files.Data[0].Path != "data.csv" || files.Data[0].Bytes != 6 || files.Data[1].Path != "notes.txt" {
		t.Errorf("the container's files: %+v", files.Data)
	}
	if !bigAlloc(t, hs.URL, c.ID) {
		t.Errorf("memory_limit 4g: the container's code could not fill 700 MiB")
	}
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"sum n","include":["code_interpreter_call.outputs"],
		"tools":[{"type":"code_interpreter","container":"`+c.ID+`"}]}`)
	if status != 200 {
		t.Fatalf("a response in the container: %d %s", status, data)
	}
	if r := decodeResponse(t, data); r.Output[0].ContainerID != c.ID || (*r.Output[0].Outputs)[0].Logs != "3\n" {
		t.Errorf("a response in the container: %s", data)
	}
}

// bigAlloc reports whether code in container id can fill 700 MiB: more than the
// default limits' 512 MiB, less than any memory_limit's.
func bigAlloc(t *testing.T, url, id string) bool {
	t.Helper()
	resp, err := http.Post(url+"/v1/sessions/"+id+"/execute", "application/json",
		strings.NewReader(`{"code":"b = b'x' * (700 << 20)\nprint(len(b) >> 20)\ndel b"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var res struct {
		Status string `json:"status"`
		Stdout string `json:"stdout"`
	}
	if json.Unmarshal(data, &res) != nil {
		t.Fatalf("execute: %s", data)
	}
	t.Logf("700 MiB in %s: %s %q", id, res.Status, res.Stdout)
	return res.Status == "ok" && res.Stdout == "700\n"
}

// TestContainerRefusals: what a container cannot be made with, by both routes.
func TestContainerRefusals(t *testing.T) {
	_, hs := testenvFake(t)
	tool := func(c string) string {
		return `{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter","container":` + c + `}]}`
	}
	for _, tc := range []struct {
		path, body string
		status     int
		code       string
	}{
		// The server's max_memory is 4GiB.
		{"/v1/responses", tool(`{"type":"auto","memory_limit":"16g"}`), 400, "memory_limit_too_high"},
		{"/v1/responses", tool(`{"type":"auto","memory_limit":"2g"}`), 400, "invalid_memory_limit"},
		{"/v1/responses", tool(`{"type":"auto","file_ids":["file-nope"]}`), 404, "file_not_found"},
		// This server allows no network.
		{"/v1/responses", tool(`{"type":"auto","network_policy":{"type":"allowlist","allowed_domains":["example.com"]}}`), 403, "network_not_permitted"},
		{"/v1/responses", tool(`{"type":"auto","network_policy":{"type":"allowlist","allowed_domains":["example.com"],"domain_secrets":[{"domain":"example.com","name":"K","value":"v"}]}}`), 400, "invalid_container"},
		{"/v1/responses", tool(`{"type":"auto","network_policy":{"type":"open"}}`), 400, "invalid_container"},
		{"/v1/containers", `{"memory_limit":"64g"}`, 400, "memory_limit_too_high"},
		{"/v1/containers", `{"memory_limit":"1G"}`, 400, "invalid_memory_limit"},
		{"/v1/containers", `{"file_ids":["file-nope"]}`, 404, "file_not_found"},
	} {
		resp, err := http.Post(hs.URL+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		if resp.StatusCode != tc.status || e.Error.Code != tc.code {
			t.Errorf("POST %s %s: got %d %s, want %d %s", tc.path, tc.body, resp.StatusCode, data, tc.status, tc.code)
		}
	}
	var list struct {
		Data []any `json:"data"`
	}
	getJSON(t, hs.URL+"/v1/containers", &list)
	if len(list.Data) != 0 {
		t.Errorf("a refused request left %d containers", len(list.Data))
	}
}

// TestResponsesImageURL: a figure is an image output whose URL, on this server,
// serves the PNG from the container's files, and the answer cites it.
func TestResponsesImageURL(t *testing.T) {
	_, hs := testenvFake(t,
		llmtest.Calls(code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")), llmtest.Text("Here is the plot."))
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"plot","include":["code_interpreter_call.outputs"],
		"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r := decodeResponse(t, data)
	run := r.Output[0]
	if run.Outputs == nil || len(*run.Outputs) != 2 || (*run.Outputs)[1].Type != "image" {
		t.Fatalf("want the logs and an image: %s", data)
	}
	u := (*run.Outputs)[1].URL
	prefix := hs.URL + "/v1/containers/" + run.ContainerID + "/files/cfile_"
	if !strings.HasPrefix(u, prefix) || !strings.HasSuffix(u, "/content") {
		t.Fatalf("image URL %q, want %s…/content", u, prefix)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	png, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("GET the image URL: %d, %d bytes beginning %q", resp.StatusCode, len(png), png[:min(8, len(png))])
	}
	ann := r.Output[1].Content[0].Annotations
	fileID := strings.TrimSuffix(strings.TrimPrefix(u, hs.URL+"/v1/containers/"+run.ContainerID+"/files/"), "/content")
	if len(ann) != 1 || ann[0].Type != "container_file_citation" || ann[0].FileID != fileID || !strings.HasSuffix(ann[0].Filename, "-figure-1.png") {
		t.Errorf("the answer's citations %+v, want the figure %s", ann, fileID)
	}
}

// TestResponsesImageDataURL: with response_images "data", a figure is a data:
// URL, and nothing is saved in the container.
func TestResponsesImageDataURL(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Calls(code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")), llmtest.Text("Here is the plot."))
	router, err := llm.NewRouter("fake", up.Provider())
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Config{Max: 10, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, testenv.Runner(t))
	t.Cleanup(sessions.Close)
	srv := api.New(api.DefaultConfig(), testenv.Runner(t), sessions, func() error { return nil }, slog.New(slog.DiscardHandler))
	srv.SetGateway(&api.Gateway{Upstreams: router, Agent: &agent.Agent{MaxSteps: 5}, DataURLImages: true})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"plot","include":["code_interpreter_call.outputs"],
		"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r := decodeResponse(t, data)
	run := r.Output[0]
	if run.Outputs == nil || len(*run.Outputs) != 2 || !strings.HasPrefix((*run.Outputs)[1].URL, "data:image/png;base64,iVBOR") {
		t.Fatalf("want the logs and a data: URL image: %s", data)
	}
	var files struct {
		Data []any `json:"data"`
	}
	getJSON(t, hs.URL+"/v1/containers/"+run.ContainerID+"/files", &files)
	if len(files.Data) != 0 || len(r.Output[1].Content[0].Annotations) != 0 {
		t.Errorf("the container has files %v, the answer citations %+v; want none", files.Data, r.Output[1].Content[0].Annotations)
	}
}

// TestResponsesImageFileID: an input_image by file_id is placed in the container
// and shown to the model as a data: URL.
func TestResponsesImageFileID(t *testing.T) {
	up, hs := testenvFake(t, llmtest.Calls(code("import os\nprint(os.path.getsize('dot.png'))")), llmtest.Text("12 bytes"))
	png := "\x89PNG\r\n\x1a\n0000"
	id := uploadFile(t, hs.URL, "dot.png", png)
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","include":["code_interpreter_call.outputs"],"tools":[{"type":"code_interpreter"}],
		"input":[{"role":"user","content":[{"type":"input_text","text":"how big?"},{"type":"input_image","file_id":"`+id+`"}]}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	if r := decodeResponse(t, data); (*r.Output[0].Outputs)[0].Logs != "12\n" {
		t.Errorf("the code did not find dot.png: %s", data)
	}
	body, _ := json.Marshal(up.ChatRequests()[0].Messages)
	if !strings.Contains(string(body), "data:image/png;base64,") || strings.Contains(string(body), id) {
		t.Errorf("the model was shown %s, want the image as a data: URL", body)
	}
}

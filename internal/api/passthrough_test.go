package api

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/session"
)

// passthroughServer is a gateway in front of up whose Responses requests without
// the code tool go to up's own endpoint as mode says.
func passthroughServer(t *testing.T, up *llmtest.Server, mode string) *httptest.Server {
	t.Helper()
	m := session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, noSandbox{t})
	t.Cleanup(m.Close)
	srv := New(DefaultConfig(), noSandbox{t}, m, func() error { return nil }, nil)
	router, err := llm.NewRouter("fake", up.Provider())
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGateway(&Gateway{Upstreams: router, Agent: &agent.Agent{MaxSteps: 3}, UpstreamResponses: mode})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

// TestResponsesPassthrough: a Responses request without the code tool goes to an
// upstream's own Responses endpoint as it is (streaming too), when the mode and
// the upstream allow; else it is translated to chat completions, as a request
// with the code tool always is.
func TestResponsesPassthrough(t *testing.T) {
	const plain = `{"model":"fake-model","input":"hi","x_vendor":{"keep":true}}`
	type call struct {
		body string
		// status and what the reply is: the upstream's own (body or events), or a
		// translated Response ("translated").
		status int
		reply  string
		// paths are the upstream routes the request reached.
		paths []string
	}
	for _, tc := range []struct {
		name     string
		mode     string
		upstream bool // the upstream has /v1/responses
		calls    []call
	}{
		{"auto, the upstream has it", "auto", true, []call{
			{plain, 200, llmtest.ResponseBody("fake-model", "from upstream"), []string{"/v1/responses"}},
			{`{"model":"fake-model","input":"hi","stream":true}`, 200, llmtest.ResponseEvents("fake-model", "from upstream"), []string{"/v1/responses"}},
			// The provider's prefix is the router's, not the upstream's.
			{`{"model":"fake/fake-model","input":"hi"}`, 200, llmtest.ResponseBody("fake-model", "from upstream"), []string{"/v1/responses"}},
		}},
		{"auto, the upstream has none: found once", "auto", false, []call{
			{plain, 200, "translated", []string{"/v1/responses", "/v1/chat/completions"}},
			{plain, 200, "translated", []string{"/v1/chat/completions"}},
		}},
		{"off", "off", true, []call{{plain, 200, "translated", []string{"/v1/chat/completions"}}}},
		{"on, the upstream has none", "on", false, []call{{plain, 502, "upstream_error", []string{"/v1/responses"}}}},
		{"the code tool is translated", "on", true, []call{
			{`{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter"}]}`, 200, "translated", []string{"/v1/chat/completions"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := llmtest.NewServer(t)
			if tc.upstream {
				up.SetResponses("from upstream")
			}
			hs := passthroughServer(t, up, tc.mode)
			for i, c := range tc.calls {
				before := len(up.Requests())
				if c.reply == "translated" {
					up.Add(llmtest.Text("translated answer"))
				}
				resp, err := http.Post(hs.URL+"/v1/responses", "application/json", strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var paths []string
				reqs := up.Requests()[before:]
				for _, r := range reqs {
					paths = append(paths, r.Path)
				}
				if strings.Join(paths, " ") != strings.Join(c.paths, " ") {
					t.Errorf("request %d reached the upstream at %v, want %v", i, paths, c.paths)
				}
				switch c.reply {
				case "translated":
					if resp.StatusCode != c.status || !strings.Contains(string(got), `"output_text":"translated answer"`) {
						t.Errorf("request %d: %d %s, want the translated answer", i, resp.StatusCode, got)
					}
				case "upstream_error":
					if resp.StatusCode != c.status || !strings.Contains(string(got), `"code":"upstream_error"`) {
						t.Errorf("request %d: %d %s, want %d upstream_error", i, resp.StatusCode, got, c.status)
					}
				default:
					if resp.StatusCode != c.status || string(got) != c.reply {
						t.Errorf("request %d: %d\n%s\nwant the upstream's reply as it is:\n%s", i, resp.StatusCode, got, c.reply)
					}
					// The body went as it was, byte for byte; with the router's model
					// prefix, as it was but for the model.
					want := c.body
					got := string(reqs[len(reqs)-1].Body)
					if strings.Contains(c.body, "fake/") {
						want = canonical(t, strings.Replace(c.body, "fake/fake-model", "fake-model", 1))
						got = canonical(t, got)
					}
					if got != want {
						t.Errorf("request %d: the upstream got %s, want %s", i, got, want)
					}
				}
			}
		})
	}
}

// canonical is JSON text with its object keys sorted.
func canonical(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestResponsesPassthroughContinuesHere: a follow-up of a response this server
// made is translated here, though the upstream has its own endpoint: the upstream
// does not know the response.
func TestResponsesPassthroughContinuesHere(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Text("first"), llmtest.Text("second"))
	up.SetResponses("from upstream")
	hs := passthroughServer(t, up, "on")
	post := func(body string) string {
		t.Helper()
		resp, err := http.Post(hs.URL+"/v1/responses", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", body, resp.StatusCode, b)
		}
		return string(b)
	}
	// With the code tool (which the model does not call), it is translated and kept.
	first := post(`{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter"}]}`)
	id, _, _ := strings.Cut(strings.TrimPrefix(first, `{"id":"`), `"`)
	if !strings.HasPrefix(id, "resp_") {
		t.Fatalf("first response: %s", first)
	}
	if second := post(`{"model":"fake-model","input":"and?","previous_response_id":"` + id + `"}`); !strings.Contains(second, `"output_text":"second"`) {
		t.Errorf("the follow-up was not translated here: %s", second)
	}
	if third := post(`{"model":"fake-model","input":"hi","previous_response_id":"resp_of_the_upstream"}`); !strings.Contains(third, "from upstream") {
		t.Errorf("a follow-up of the upstream's response did not go there: %s", third)
	}
	var paths []string
	for _, r := range up.Requests() {
		paths = append(paths, r.Path)
	}
	if want := "/v1/chat/completions /v1/chat/completions /v1/responses"; strings.Join(paths, " ") != want {
		t.Errorf("the upstream got %v, want %s", paths, want)
	}
}

// TestResponsesNetworkPolicy: a code tool's network_policy is the code's network,
// within the operator's allowlist: the model is told of it.
func TestResponsesNetworkPolicy(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Text("ok"), llmtest.Text("ok"))
	hs := gatewayServer(t, up, nil, nil, func(c *Config) { c.Policy.NetworkAllow = []string{"*.example.com"} })
	for i, tc := range []struct{ policy, hint string }{
		{`{"type":"allowlist","allowed_domains":["api.example.com"]}`, "to these hosts, through a proxy that refuses all others: api.example.com"},
		{`{"type":"disabled"}`, "with no network access"},
	} {
		body := `{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto","network_policy":` + tc.policy + `}}]}`
		resp, err := http.Post(hs.URL+"/v1/responses", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.policy, resp.StatusCode, got)
		}
		reqs := up.ChatRequests()
		if sys, _ := json.Marshal(reqs[i].Messages[0]); !strings.Contains(string(sys), tc.hint) {
			t.Errorf("network_policy %s: the model was told %s, want %q", tc.policy, sys, tc.hint)
		}
	}
	resp, err := http.Post(hs.URL+"/v1/responses", "application/json", strings.NewReader(
		`{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto","network_policy":{"type":"allowlist","allowed_domains":["evil.org"]}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(got), "network_not_permitted") {
		t.Errorf("a domain beyond the allowlist: %d %s", resp.StatusCode, got)
	}
}

// TestNoEndpoint: which upstream 404s say there is no Responses endpoint.
func TestNoEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  llm.APIError
		want bool
	}{
		{"405", llm.APIError{Status: 405}, true},
		{"vLLM, Ollama: no code", llm.APIError{Status: 404, Message: "Not Found"}, true},
		{"OpenAI's unknown URL", llm.APIError{Status: 404, Type: "invalid_request_error", Message: "Invalid URL (POST /v1/responses)"}, true},
		{"llama.cpp", llm.APIError{Status: 404, Code: "404", Type: "not_found_error", Message: "File Not Found"}, true},
		{"an unknown previous response", llm.APIError{Status: 404, Code: "previous_response_not_found", Param: "previous_response_id"}, false},
		{"an unknown model", llm.APIError{Status: 404, Code: "model_not_found"}, false},
		{"400", llm.APIError{Status: 400}, false},
	} {
		if got := noEndpoint(&tc.err); got != tc.want {
			t.Errorf("noEndpoint(%s: %+v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestResponsesInlineUploads: translated without the code tool, an input_file
// naming an upload reaches the upstream with its content, since the upstream
// knows nothing of codeexec's files; an unknown one is refused.
func TestResponsesInlineUploads(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Text("read it"))
	hs := passthroughServer(t, up, "off")
	f := decodeFile(t, upload(t, hs.URL, "", "notes.txt", "hello", "purpose", "user_data"))
	input := func(id string) string {
		return `{"model":"fake-model","input":[{"role":"user","content":[{"type":"input_text","text":"read"},{"type":"input_file","file_id":"` + id + `"}]}]}`
	}
	r := do(t, "POST", hs.URL+"/v1/responses", input(f.ID))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	reqs := up.Requests()
	if body := string(reqs[len(reqs)-1].Body); !strings.Contains(body, `"file_data":"aGVsbG8="`) || !strings.Contains(body, `"filename":"notes.txt"`) || strings.Contains(body, f.ID) {
		t.Errorf("the upstream got %s, want the file's content", body)
	}
	wantError(t, "an unknown file_id", do(t, "POST", hs.URL+"/v1/responses", input("file-nope")), 400, "file_not_found")

	// An input_image by file_id becomes a data: URL.
	up.Add(llmtest.Text("saw it"))
	png := "\x89PNG\r\n\x1a\n0000"
	img := decodeFile(t, upload(t, hs.URL, "", "dot.png", png, "purpose", "vision"))
	r = do(t, "POST", hs.URL+"/v1/responses", `{"model":"fake-model","input":[{"role":"user","content":[{"type":"input_image","file_id":"`+img.ID+`","detail":"low"}]}]}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	reqs = up.Requests()
	want := `"image_url":{"url":"data:image/png;base64,` + base64.StdEncoding.EncodeToString([]byte(png)) + `","detail":"low"}`
	if body := string(reqs[len(reqs)-1].Body); !strings.Contains(body, want) || strings.Contains(body, img.ID) {
		t.Errorf("the upstream got %s, want %s", body, want)
	}
}

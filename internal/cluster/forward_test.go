package cluster

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// testCluster is replica r0 of peers r0 (front, this one), r1 (owner, an httptest
// server), r2 (gone: nothing listens at its address) and r3 (no E2B listener).
type testCluster struct {
	front *httptest.Server
	owner *httptest.Server
	seen  chan *http.Request // the requests the owner got, with their bodies read into Header["X-Body"]
}

func newTestCluster(t *testing.T, ownerHandler http.HandlerFunc) *testCluster {
	t.Helper()
	tc := &testCluster{seen: make(chan *http.Request, 10)}
	tc.owner = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Header.Set("X-Body", string(body))
		tc.seen <- r
		ownerHandler(w, r)
	}))
	t.Cleanup(tc.owner.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	var c *Cluster
	tc.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		face := FaceAPI
		if r.Header.Get("X-Face") == "e2b" {
			face = FaceE2B
		}
		if c.Forward(w, r, face, r.Header.Get("X-Id"), testLost) {
			return
		}
		io.WriteString(w, "local")
	}))
	t.Cleanup(tc.front.Close)
	peers, err := ParsePeersFile("peers", []byte(strings.Join([]string{
		"r0 " + tc.front.URL + " " + tc.front.URL,
		"r1 " + tc.owner.URL + " " + tc.owner.URL + "/e2b",
		"r2 " + gone + " " + gone,
		"r3 " + tc.owner.URL,
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if c, err = New(Config{Self: "r0", Peers: peers}); err != nil {
		t.Fatal(err)
	}
	return tc
}

func testLost(w http.ResponseWriter, _ *http.Request, msg string) {
	w.Header().Set("X-Lost", "1")
	w.WriteHeader(http.StatusGone)
	io.WriteString(w, "session_lost: "+msg)
}

func TestForward(t *testing.T) {
	tc := newTestCluster(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Owner", "r1")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "owner:"+r.Method+" "+r.URL.RequestURI())
	})
	tests := []struct {
		name     string
		id       string
		face     string
		hop      string
		status   int
		body     string // a prefix of the reply's body
		lost     bool
		forwards string // the URI the owner is asked for; "" for none
	}{
		{name: "other replica's", id: "sess_r1_abc", status: 201, body: "owner:POST /v1/sessions/sess_r1_abc/execute?x=1", forwards: "/v1/sessions/sess_r1_abc/execute?x=1"},
		{name: "other replica's, e2b face", id: "sess_r1_abc", face: "e2b", status: 201, body: "owner:POST /e2b/v1/sessions/sess_r1_abc/execute?x=1", forwards: "/e2b/v1/sessions/sess_r1_abc/execute?x=1"},
		{name: "own", id: "sess_r0_abc", status: 200, body: "local"},
		{name: "no owner", id: "sess_0123abcd", status: 200, body: "local"},
		{name: "no id", id: "", status: 200, body: "local"},
		{name: "unknown replica", id: "sess_r9_abc", status: 410, lost: true, body: `session_lost: "sess_r9_abc" is lost: its replica r9 is not part of this deployment`},
		{name: "unreachable replica", id: "sess_r2_abc", status: 410, lost: true, body: `session_lost: "sess_r2_abc" is lost: its replica r2 cannot be reached (`},
		{name: "forwarded already", id: "sess_r1_abc", hop: "r1", status: 410, lost: true, body: `session_lost: "sess_r1_abc" belongs to replica r1, but r1 forwarded it here`},
		{name: "no e2b listener", id: "sess_r3_abc", face: "e2b", status: 410, lost: true, body: `session_lost: "sess_r3_abc" belongs to replica r3, whose E2B listener`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tc.front.URL+"/v1/sessions/"+tt.id+"/execute?x=1", strings.NewReader(`{"code":"1"}`))
			req.Header.Set("Authorization", "Bearer k1")
			req.Header.Set("X-Id", tt.id)
			req.Header.Set("X-Face", tt.face)
			if tt.hop != "" {
				req.Header.Set(HopHeader, tt.hop)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.HasPrefix(string(body), tt.body) || (resp.Header.Get("X-Lost") != "") != tt.lost {
				t.Errorf("POST for %q: got %d %q (lost %q), want %d %q (lost %v)", tt.id, resp.StatusCode, body, resp.Header.Get("X-Lost"), tt.status, tt.body, tt.lost)
			}
			select {
			case r := <-tc.seen:
				if tt.forwards == "" {
					t.Fatalf("the owner was asked for %s, want no forward", r.URL)
				}
				// The owner checks the key itself, and knows the request was forwarded.
				if r.URL.RequestURI() != tt.forwards || r.Header.Get("Authorization") != "Bearer k1" || r.Header.Get(HopHeader) != "r0" ||
					r.Header.Get("X-Body") != `{"code":"1"}` {
					t.Errorf("the owner got %s %s, Authorization %q, %s %q, body %q; want %s with the client's key and body, %s r0",
						r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), HopHeader, r.Header.Get(HopHeader), r.Header.Get("X-Body"), tt.forwards, HopHeader)
				}
				if resp.Header.Get("X-Owner") != "r1" {
					t.Errorf("the owner's headers did not come back: %v", resp.Header)
				}
			default:
				if tt.forwards != "" {
					t.Errorf("the owner was not asked for %s", tt.forwards)
				}
			}
		})
	}
}

// TestForwardStreams checks that a stream passes through as the owner writes it:
// the client reads the first event while the owner still holds the second back.
func TestForwardStreams(t *testing.T) {
	release := make(chan struct{})
	tc := newTestCluster(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: 2\n\n")
	})
	req, _ := http.NewRequest("GET", tc.front.URL+"/stream", nil)
	req.Header.Set("X-Id", "sess_r1_abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	// Had the forwarder buffered, this read would wait for release, which comes
	// only after it: the test would hang until its timeout.
	close(release)
	if err != nil || line != "data: 1\n" {
		t.Fatalf("first line = %q, %v; want data: 1", line, err)
	}
	rest, _ := io.ReadAll(rd)
	if string(rest) != "\ndata: 2\n\n" || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("rest = %q (Content-Type %q), want the second event", rest, resp.Header.Get("Content-Type"))
	}
}

func TestNilClusterForwardsNothing(t *testing.T) {
	var c *Cluster
	rec := httptest.NewRecorder()
	if c.Forward(rec, httptest.NewRequest("GET", "/", nil), FaceAPI, "sess_r1_abc", testLost) {
		t.Errorf("a lone server forwarded %q", "sess_r1_abc")
	}
	if c.Self() != "" || c.Names() != nil {
		t.Errorf("a lone server has a name %q or peers %v", c.Self(), c.Names())
	}
}

// closedPastLength is a request body that fails, as a server's closed one does,
// when read past its length.
type closedPastLength struct {
	data []byte
	off  int
}

func (c *closedPastLength) Read(p []byte) (int, error) {
	if c.off >= len(c.data) {
		return 0, errors.New("http: invalid Read on closed Body")
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}

func (c *closedPastLength) Close() error { return nil }

func TestExactBody(t *testing.T) {
	tests := []struct {
		data   string
		length int64
		want   string
		err    error // of the read that ends it
	}{
		{data: `{"code":"1"}`, length: 12, want: `{"code":"1"}`, err: io.EOF},
		// Shorter than it said: an error, not a silent end.
		{data: `{"co`, length: 12, want: `{"co`, err: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		var src io.ReadCloser = &closedPastLength{data: []byte(tt.data)}
		if tt.err == io.ErrUnexpectedEOF {
			src = io.NopCloser(strings.NewReader(tt.data))
		}
		b := &exactBody{r: src, left: tt.length}
		got, err := io.ReadAll(b)
		if tt.err == io.EOF && (err != nil || string(got) != tt.want) {
			t.Errorf("ReadAll(%q of %d) = %q, %v; want %q", tt.data, tt.length, got, err, tt.want)
		}
		if tt.err != io.EOF && !errors.Is(err, tt.err) {
			t.Errorf("ReadAll(%q of %d) = %q, %v; want %v", tt.data, tt.length, got, err, tt.err)
		}
		// The transport's read past the length: EOF, the source untouched.
		if n, err := b.Read(make([]byte, 8)); tt.err == io.EOF && (n != 0 || err != io.EOF) {
			t.Errorf("a read past the length of %q = %d, %v; want 0, EOF", tt.data, n, err)
		}
	}
}

// TestForwardOwnerDiesBeforeAnswer: an owner that goes away before it answers (its
// process killed in the middle of an execution) is session_lost, not a 502 or a hang.
func TestForwardOwnerDiesBeforeAnswer(t *testing.T) {
	tc := newTestCluster(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	req, _ := http.NewRequest("POST", tc.front.URL+"/v1/sessions/sess_r1_abc/execute", strings.NewReader(`{"code":"1"}`))
	req.Header.Set("X-Id", "sess_r1_abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 410 || !strings.HasPrefix(string(body), `session_lost: "sess_r1_abc" is lost: its replica r1 cannot be reached`) {
		t.Errorf("owner gone before its answer: %d %q, want 410 session_lost", resp.StatusCode, body)
	}
}

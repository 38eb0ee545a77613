package containment_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// reply is an answer of the API: its status and body.
type reply struct {
	status int
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// send makes an API request without a key through the default client.
func send(t *testing.T, method, url string, body []byte) reply {
	t.Helper()
	return sendWith(t, http.DefaultClient, "", method, url, body)
}

// sendWith makes an API request through client, with key as its bearer token when
// it is not empty, and returns the answer; only a failure to get one fails the test.
func sendWith(t *testing.T, client *http.Client, key, method, url string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the reply: %v", method, url, err)
	}
	return reply{resp.StatusCode, data}
}

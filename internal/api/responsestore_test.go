package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
)

// TestResponseStore: a response is kept for its owner until its time is up, and
// the oldest go first past the cap.
func TestResponseStore(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newResponseStore(time.Minute)
	s.put("resp_a", &storedResponse{owner: "t1", container: "sess_1"}, now)
	for _, tc := range []struct {
		owner string
		at    time.Duration
		found bool
	}{
		{"t1", 0, true},
		{"t2", 0, false}, // another tenant's
		{"t1", 59 * time.Second, true},
		{"t1", time.Minute, false}, // expired
	} {
		if got := s.get(tc.owner, "resp_a", now.Add(tc.at)) != nil; got != tc.found {
			t.Errorf("get(%q, +%v) found %v, want %v", tc.owner, tc.at, got, tc.found)
		}
	}
	s = newResponseStore(time.Hour)
	for i := 0; i <= maxStoredResponses; i++ {
		s.put(fmt.Sprintf("resp_%d", i), &storedResponse{owner: "t"}, now)
	}
	if s.get("t", "resp_0", now) != nil || s.get("t", "resp_1", now) == nil || len(s.byID) != maxStoredResponses {
		t.Errorf("past the cap: %d kept, the oldest kept: %v", len(s.byID), s.get("t", "resp_0", now) != nil)
	}
}

// TestResponseStoreItems: an item_reference finds the output item of one of its
// tenant's stored responses, the latest one with that id, until it expires.
func TestResponseStoreItems(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newResponseStore(time.Minute)
	first, second := &agent.Execution{ID: "call_1"}, &agent.Execution{ID: "call_1"}
	s.put("resp_a", &storedResponse{owner: "t1", items: map[string]agent.Item{"call_1": first, "msg_a_1": &agent.Message{}}}, now)
	s.put("resp_b", &storedResponse{owner: "t1", items: map[string]agent.Item{"call_1": second}}, now.Add(30*time.Second))
	for _, tc := range []struct {
		owner, id string
		at        time.Duration
		want      agent.Item
	}{
		{"t1", "call_1", 0, second}, // the latest response's
		{"t1", "msg_a_1", 59 * time.Second, s.byID["resp_a"].items["msg_a_1"]},
		{"t2", "call_1", 0, nil},                // another tenant's
		{"t1", "msg_a_1", time.Minute, nil},     // resp_a expired
		{"t1", "call_1", time.Minute, second},   // resp_b has not
		{"t1", "call_1", 90 * time.Second, nil}, // now it has
		{"t1", "msg_nope", 0, nil},
	} {
		if got := s.item(tc.owner, tc.id, now.Add(tc.at)); got != tc.want {
			t.Errorf("item(%q, %q, +%v) = %p, want %p", tc.owner, tc.id, tc.at, got, tc.want)
		}
	}
	if len(s.itemIn) != 0 {
		t.Errorf("the expired responses' items are still indexed: %v", s.itemIn)
	}
}

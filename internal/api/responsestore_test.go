package api

import (
	"fmt"
	"testing"
	"time"
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

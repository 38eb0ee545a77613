package api

import (
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
)

// maxStoredResponses bounds the responses kept for previous_response_id: past it,
// the oldest is forgotten first, so that a busy client cannot grow the server's
// memory without bound before the entries expire.
const maxStoredResponses = 10000

// storedResponse is what a follow-up request needs of a response: the
// conversation up to its end, in the loop's items, and the container its code ran
// in.
type storedResponse struct {
	owner        string // the tenant that made it: only it may continue it
	conversation []agent.Item
	// items are the response's output items by their public ids, for the
	// item_reference items of later requests.
	items     map[string]agent.Item
	container string
	expires   time.Time
}

// responseStore keeps responses in memory for a while; a restart forgets them.
type responseStore struct {
	mu    sync.Mutex
	ttl   time.Duration
	byID  map[string]*storedResponse
	order []string // ids, oldest first
	// itemIn is the response of each output item id. An item id can recur (a code
	// run's id is the model's call id, which some models repeat): the latest
	// response that has it wins.
	itemIn map[string]string
}

func newResponseStore(ttl time.Duration) *responseStore {
	return &responseStore{ttl: ttl, byID: map[string]*storedResponse{}, itemIn: map[string]string{}}
}

func (s *responseStore) put(id string, r *storedResponse, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	for len(s.order) >= maxStoredResponses {
		s.forget(s.order[0])
		s.order = s.order[1:]
	}
	r.expires = now.Add(s.ttl)
	s.byID[id] = r
	s.order = append(s.order, id)
	for itemID := range r.items {
		s.itemIn[itemID] = id
	}
}

// forget drops response id and its items' entries; the caller drops it from order.
func (s *responseStore) forget(id string) {
	for itemID := range s.byID[id].items {
		if s.itemIn[itemID] == id {
			delete(s.itemIn, itemID)
		}
	}
	delete(s.byID, id)
}

// item returns the output item itemID of one of owner's responses, or nil.
func (s *responseStore) item(owner, itemID string, now time.Time) agent.Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	r := s.byID[s.itemIn[itemID]]
	if r == nil || r.owner != owner {
		return nil
	}
	return r.items[itemID]
}

// get returns owner's response id, or nil when it expired, never existed or is
// another tenant's.
func (s *responseStore) get(owner, id string, now time.Time) *storedResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	r := s.byID[id]
	if r == nil || r.owner != owner {
		return nil
	}
	return r
}

// expire forgets the responses whose time is up; they expire in the order they
// were stored, since all have the same ttl.
func (s *responseStore) expire(now time.Time) {
	n := 0
	for n < len(s.order) && !now.Before(s.byID[s.order[n]].expires) {
		s.forget(s.order[n])
		n++
	}
	s.order = s.order[n:]
}

package safety

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

// cacheSize bounds the verdicts an LLM judge remembers.
const cacheSize = 4096

// verdictCache is a least-recently-used map of verdicts keyed by cacheKey. It holds
// only verdicts the model gave, never errors: a failed check is asked again.
type verdictCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front is the most recently used *cacheEntry
	byKey map[[32]byte]*list.Element
}

type cacheEntry struct {
	key [32]byte
	v   Verdict
}

func newVerdictCache(max int) *verdictCache {
	return &verdictCache{max: max, order: list.New(), byKey: make(map[[32]byte]*list.Element)}
}

// cacheKey is the SHA-256 of model, network rule and code, each length-prefixed so
// that no two triples share a key.
func cacheKey(model, rule, code string) [32]byte {
	var b []byte
	for _, s := range []string{model, rule, code} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return sha256.Sum256(b)
}

func (c *verdictCache) get(k [32]byte) (Verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return Verdict{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).v, true
}

func (c *verdictCache) put(k [32]byte, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		e.Value.(*cacheEntry).v = v
		c.order.MoveToFront(e)
		return
	}
	c.byKey[k] = c.order.PushFront(&cacheEntry{key: k, v: v})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).key)
	}
}

func (c *verdictCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

package plugin

import (
	"fmt"
	"sync"
)

// Cache holds values computed from the store, each under the version of
// what it was computed from (store.Tx.Version): a value is computed again
// only when that version moves, and once for all the callers asking for
// it at the same time (the hosts whose state a change concerns all ask at
// once).
type Cache[V any] struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry[V]
}

type cacheEntry[V any] struct {
	version [2]int64
	done    chan struct{} // closed once value and err are set
	value   V
	err     error
}

// maxCacheEntries bounds a cache (it is emptied when full).
const maxCacheEntries = 100000

// Get returns the value of key at version, computing it if needed. A
// caller that cannot know the version (ok false) computes its own.
func (c *Cache[V]) Get(key string, version [2]int64, ok bool, compute func() (V, error)) (V, error) {
	return c.Next(key, version, ok, func(*V, [2]int64) (V, error) { return compute() })
}

// Next is Get for values that can be worked out from the one before:
// compute is given the value cached at an earlier version (and that
// version) when there is one, else nil.
func (c *Cache[V]) Next(key string, version [2]int64, ok bool, compute func(prev *V, at [2]int64) (V, error)) (V, error) {
	if !ok {
		return compute(nil, [2]int64{})
	}
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || e.version != version {
		var prev *V
		var at [2]int64
		if e != nil && isDone(e.done) && e.err == nil {
			prev, at = &e.value, e.version
		}
		if c.entries == nil || len(c.entries) >= maxCacheEntries {
			c.entries = map[string]*cacheEntry[V]{}
		}
		e = &cacheEntry[V]{version: version, done: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		c.fill(key, e, func() (V, error) { return compute(prev, at) })
		return e.value, e.err
	}
	c.mu.Unlock()
	<-e.done
	return e.value, e.err
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// fill computes e; an error or a panic leaves no entry behind, and callers
// waiting for e are answered either way (a panic answers them with an
// error and goes on up the computing caller's stack).
func (c *Cache[V]) fill(key string, e *cacheEntry[V], compute func() (V, error)) {
	defer func() {
		if r := recover(); r != nil {
			e.err = fmt.Errorf("cache: computing %s panicked: %v", key, r)
			c.drop(key, e)
			close(e.done)
			panic(r)
		}
		if e.err != nil {
			c.drop(key, e)
		}
		close(e.done)
	}()
	e.value, e.err = compute()
}

func (c *Cache[V]) drop(key string, e *cacheEntry[V]) {
	c.mu.Lock()
	if c.entries[key] == e {
		delete(c.entries, key)
	}
	c.mu.Unlock()
}

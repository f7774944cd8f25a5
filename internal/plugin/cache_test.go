package plugin

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCacheComputesOncePerVersion(t *testing.T) {
	var c Cache[int]
	var calls atomic.Int32
	compute := func(v int) func() (int, error) {
		return func() (int, error) {
			calls.Add(1)
			time.Sleep(20 * time.Millisecond) // let the others arrive while computing
			return v, nil
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := c.Get("net-1", [2]int64{5, 0}, true, compute(1)); err != nil || v != 1 {
				t.Errorf("got %d, %v; want 1", v, err)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("20 callers at one version computed %d times, want 1", n)
	}
	if v, _ := c.Get("net-1", [2]int64{5, 0}, true, compute(9)); v != 1 {
		t.Fatalf("same version computed again: %d", v)
	}
	if v, _ := c.Get("net-1", [2]int64{6, 0}, true, compute(2)); v != 2 || calls.Load() != 2 {
		t.Fatalf("a new version gave %d after %d computations, want 2 after 2", v, calls.Load())
	}
	if v, _ := c.Get("net-2", [2]int64{6, 0}, true, compute(3)); v != 3 {
		t.Fatalf("another key gave %d, want 3", v)
	}
	if v, _ := c.Get("net-1", [2]int64{6, 0}, false, compute(4)); v != 4 {
		t.Fatalf("an unknown version must compute its own: got %d", v)
	}
}

func TestCacheKeepsNoFailure(t *testing.T) {
	var c Cache[int]
	boom := errors.New("boom")
	if _, err := c.Get("k", [2]int64{1, 0}, true, func() (int, error) { return 0, boom }); err != boom {
		t.Fatalf("err %v, want boom", err)
	}
	if v, err := c.Get("k", [2]int64{1, 0}, true, func() (int, error) { return 7, nil }); err != nil || v != 7 {
		t.Fatalf("after a failure: %d, %v; want 7 computed again", v, err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic did not reach the computing caller")
			}
		}()
		c.Get("p", [2]int64{1, 0}, true, func() (int, error) { panic("bad") })
	}()
	if v, err := c.Get("p", [2]int64{1, 0}, true, func() (int, error) { return 8, nil }); err != nil || v != 8 {
		t.Fatalf("after a panic: %d, %v; want 8 computed again", v, err)
	}
}

package identity

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the tests move (the server reads it from its own
// goroutines, hence the lock).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestThrottle(t *testing.T) {
	clock := newFakeClock()
	th := newThrottle(3, time.Minute, 10*time.Second, 25*time.Second)
	th.now = clock.now
	fail := func(n int) {
		for i := 0; i < n; i++ {
			th.failed("k")
		}
	}
	// steps run in order on one throttle: each does something, moves the
	// clock, and says whether "k" is refused then.
	steps := []struct {
		name    string
		do      func()
		advance time.Duration
		refused bool
	}{
		{"below the limit", func() { fail(2) }, 0, false},
		{"at the limit", func() { fail(1) }, 0, true},
		{"during the lockout", nil, 9 * time.Second, true},
		{"after the lockout", nil, time.Second, false},
		{"locked again", func() { fail(3) }, 0, true},
		{"the second lockout is twice as long", nil, 19 * time.Second, true},
		{"after the second lockout", nil, time.Second, false},
		{"locked a third time", func() { fail(3) }, 0, true},
		{"capped at the maximum", nil, 25 * time.Second, false},
		{"failures spread over more than a window", func() { fail(2); clock.advance(61 * time.Second); fail(2) }, 0, false},
		{"forgotten after a quiet window", func() { clock.advance(2 * time.Minute); fail(3) }, 10 * time.Second, false},
		{"a success forgets the failures", func() { clock.advance(2 * time.Minute); fail(2); th.succeeded("k"); fail(2) }, 0, false},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		clock.advance(s.advance)
		if got := th.refused("k"); got != s.refused {
			t.Fatalf("%s: refused %v, want %v", s.name, got, s.refused)
		}
	}
	if th.refused("other") {
		t.Error("a key without failures is refused")
	}
}

// TestLoginBackoff: after repeated failures a user, known or not, is
// refused for a growing time without its password being checked, with the
// answer a wrong password gets; so is a client address.
func TestLoginBackoff(t *testing.T) {
	clock := newFakeClock()
	// A user may fail 3 times, an address 20 (the user steps fail 13 times from
	// 10.0.0.1, the address steps from 10.0.0.9).
	b, srv := newBuiltinWith(t, func(b *Builtin) {
		b.userLogins = newThrottle(3, time.Minute, 10*time.Second, time.Hour)
		b.addrLogins = newThrottle(20, time.Minute, 10*time.Second, time.Hour)
		b.userLogins.now, b.addrLogins.now = clock.now, clock.now
		b.ClientAddr = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
	})

	// try logs user in from client and returns the status, the body and
	// how many key derivations that cost.
	try := func(client, user, pw string) (int, map[string]any, int64) {
		t.Helper()
		before := b.pw.derivations.Load()
		st, _, body := send(t, srv, "POST", "/v3/auth/tokens", map[string]string{"X-Test-Client": client}, login(user, pw, user))
		return st, body, b.pw.derivations.Load() - before
	}
	expect := func(what string, st, wantSt int, derived, wantDerived int64) {
		t.Helper()
		if st != wantSt || derived != wantDerived {
			t.Errorf("%s: %d with %d key derivations, want %d with %d", what, st, derived, wantSt, wantDerived)
		}
	}

	_, wrong, _ := try("10.0.0.3", "admin", "guess") // what a wrong password gets
	for _, user := range []string{"demo", "ghost"} { // ghost does not exist
		for i := 0; i < 3; i++ {
			st, _, n := try("10.0.0.1", user, "guess")
			expect(user+": a failure", st, http.StatusUnauthorized, n, 1)
		}
		st, body, n := try("10.0.0.1", user, "demopw")
		expect(user+": locked out", st, http.StatusUnauthorized, n, 0)
		if !reflect.DeepEqual(body, wrong) {
			t.Errorf("%s: a refusal %v differs from a wrong password's %v", user, body, wrong)
		}
	}
	st, _, _ := try("10.0.0.1", "admin", "adminpw")
	expect("another user", st, http.StatusCreated, 1, 1)

	clock.advance(10 * time.Second)
	st, _, n := try("10.0.0.1", "demo", "demopw")
	expect("demo after the lockout", st, http.StatusCreated, n, 1)
	// That success cleared demo's failures: four more, with a success
	// between, do not lock it.
	try("10.0.0.1", "demo", "guess")
	try("10.0.0.1", "demo", "guess")
	st, _, n = try("10.0.0.1", "demo", "demopw")
	expect("demo after 2 failures", st, http.StatusCreated, n, 1)
	try("10.0.0.1", "demo", "guess")
	try("10.0.0.1", "demo", "guess")
	st, _, n = try("10.0.0.1", "demo", "demopw")
	expect("demo after 2 more failures", st, http.StatusCreated, n, 1)

	// The second lockout of ghost lasts twice as long as the first.
	for i := 0; i < 3; i++ {
		try("10.0.0.1", "ghost", "guess")
	}
	clock.advance(10 * time.Second)
	st, _, n = try("10.0.0.1", "ghost", "guess")
	expect("ghost 10 s into its second lockout", st, http.StatusUnauthorized, n, 0)
	clock.advance(10 * time.Second)
	st, _, n = try("10.0.0.1", "ghost", "guess")
	expect("ghost after its second lockout", st, http.StatusUnauthorized, n, 1)

	// An address that failed too often is refused, whoever it names, even
	// after a success; other addresses are not.
	for i := 0; i < 20; i++ {
		try("10.0.0.9", "u"+strconv.Itoa(i), "guess") // no user fails more than once
	}
	st, _, n = try("10.0.0.9", "admin", "adminpw")
	expect("admin from a locked address", st, http.StatusUnauthorized, n, 0)
	st, _, n = try("10.0.0.2", "admin", "adminpw")
	expect("admin from another address", st, http.StatusCreated, n, 1)
	clock.advance(10 * time.Second)
	st, _, n = try("10.0.0.9", "admin", "adminpw")
	expect("admin from the address after its lockout", st, http.StatusCreated, n, 1)
}

// TestClientAddr: without ClientAddr, the client is the host of RemoteAddr.
func TestClientAddr(t *testing.T) {
	b := NewBuiltin(nil)
	for _, c := range []struct{ remote, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[2001:db8::1]:5000", "2001:db8::1"},
		{"pipe", "pipe"},
	} {
		r := httptest.NewRequest("POST", "/v3/auth/tokens", nil)
		r.RemoteAddr = c.remote
		if got := b.clientAddr(r); got != c.want {
			t.Errorf("RemoteAddr %q: %q, want %q", c.remote, got, c.want)
		}
	}
}

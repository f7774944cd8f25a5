package identity

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// throttle refuses for a while the logins of a key (a user as the client
// named it, a client address) that failed too often, to slow password
// guessing: failures failed logins within window refuse the key for
// lockout, each further lockout for twice as long as the one before, up to
// maxLockout. A key with no failure for a window after its lockout ended
// starts afresh. Keys are counted whether or not the user exists, and a
// refusal is the 401 of a wrong password, so neither tells which users
// exist.
//
// The state is this server's: with several servers an attacker gets each
// server's allowance. Lockouts bound the guessing rate all the same, and
// keeping failures in the database would make every failed login a write.
type throttle struct {
	failures   int
	window     time.Duration
	lockout    time.Duration
	maxLockout time.Duration
	now        func() time.Time

	mu   sync.Mutex
	keys map[string]*strikes
}

type strikes struct {
	n     int       // failures since start
	start time.Time // when the current window began
	locks int       // lockouts so far
	until time.Time // refused until then
	last  time.Time // the last failure
}

// maxKeys bounds the keys a throttle remembers; past it, those it would
// have forgotten anyway go first, then any.
const maxKeys = 65536

func newThrottle(failures int, window, lockout, maxLockout time.Duration) *throttle {
	return &throttle{failures: failures, window: window, lockout: lockout, maxLockout: maxLockout,
		now: time.Now, keys: map[string]*strikes{}}
}

// refused reports whether key is locked out now.
func (t *throttle) refused(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.keys[key]
	return s != nil && t.now().Before(s.until)
}

// failed counts a failed login of key.
func (t *throttle) failed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	s := t.keys[key]
	if s == nil || t.stale(s, now) {
		if s == nil && len(t.keys) >= maxKeys {
			t.shrink(now)
		}
		s = &strikes{start: now}
		t.keys[key] = s
	}
	if now.Sub(s.start) > t.window {
		s.n, s.start = 0, now
	}
	s.n++
	s.last = now
	if s.n >= t.failures {
		d := t.lockout
		for i := 0; i < s.locks && d < t.maxLockout; i++ {
			d *= 2
		}
		s.until = now.Add(min(d, t.maxLockout))
		s.locks++
		s.n, s.start = 0, now
	}
}

// succeeded forgets key's failures.
func (t *throttle) succeeded(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}

// stale reports whether s has been quiet long enough to be forgotten.
func (t *throttle) stale(s *strikes, now time.Time) bool {
	return now.Sub(s.until) > t.window && now.Sub(s.last) > t.window
}

// shrink makes room for a key. The caller holds t.mu.
func (t *throttle) shrink(now time.Time) {
	for k, s := range t.keys {
		if t.stale(s, now) {
			delete(t.keys, k)
		}
	}
	for k := range t.keys { // map order: an arbitrary victim
		if len(t.keys) < maxKeys {
			break
		}
		delete(t.keys, k)
	}
}

// Defaults: a user may fail 5 times in 5 minutes, an address (which may be
// a NAT or a proxy for many users) 20 times; then the first lockout is 30 s,
// doubling up to 15 minutes.
func newUserThrottle() *throttle {
	return newThrottle(5, 5*time.Minute, 30*time.Second, 15*time.Minute)
}
func newAddrThrottle() *throttle {
	return newThrottle(20, 5*time.Minute, 30*time.Second, 15*time.Minute)
}

// passwordLogin is Issue behind the failed-login throttles: a user (as
// named: by id or by name) or a client address that failed too often is
// refused as a wrong password is, without checking the password. A
// successful login clears the user's failures, not the address's (else one
// account of its own would let a client guess on).
func (b *Builtin) passwordLogin(ctx context.Context, r *http.Request, userName, userID, password, projectName, projectID string) (string, *token, error) {
	userKey := "name:" + userName
	if userID != "" {
		userKey = "id:" + userID
	}
	addrKey := b.clientAddr(r)
	if b.userLogins.refused(userKey) || b.addrLogins.refused(addrKey) {
		return "", nil, errUnauthorized
	}
	tok, t, err := b.Issue(ctx, userName, userID, password, projectName, projectID)
	switch {
	case err == nil:
		b.userLogins.succeeded(userKey)
	case errors.Is(err, errUnauthorized):
		b.userLogins.failed(userKey)
		b.addrLogins.failed(addrKey)
	}
	return tok, t, err
}

func (b *Builtin) clientAddr(r *http.Request) string {
	if b.ClientAddr != nil {
		return b.ClientAddr(r)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

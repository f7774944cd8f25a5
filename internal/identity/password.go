package identity

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Passwords are stored as argon2id hashes in the PHC string format that
// other tools read: $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>
// (base64 without padding). Hashes of an older scheme, PBKDF2-SHA256 as
// pbkdf2-sha256$<iterations>$<hex salt>$<hex key>, are still verified, and
// replaced at the user's next successful login, as are argon2id hashes made
// with other parameters than the current ones.

// defaultArgon2 is the first of OWASP's argon2id configurations (Password
// Storage Cheat Sheet: 19 MiB, 2 passes, 1 lane). Measured on the
// development machine (2 cores of a shared Xeon, Go 1.26, median of 7):
// one hash takes 22 ms; 46 MiB with 1 pass 34 ms; 32 MiB with 2 passes
// 41 ms. PBKDF2-SHA256 at OWASP's 600,000 iterations takes 93 ms, over the
// 50 ms a login may cost here, hence argon2id; the 20,000 iterations used
// before took 3 ms.
var defaultArgon2 = argon2Params{time: 2, memory: 19 * 1024, threads: 1}

type argon2Params struct {
	time, memory uint32 // passes, KiB
	threads      uint8
}

const (
	saltLen = 16
	keyLen  = 32
	// maxPBKDF2Iter bounds what a stored legacy hash may ask for.
	maxPBKDF2Iter = 10_000_000
)

// passwords hashes and checks passwords.
type passwords struct {
	params argon2Params
	// slots bounds the derivations running at once: each holds
	// params.memory, so a flood of logins would otherwise take memory
	// without bound. Past it, logins wait.
	slots chan struct{}
	// dummy is what a login naming no user (or a user without a password)
	// is checked against: it costs one derivation with the current
	// parameters, like any other login, so that the time a failed login
	// takes does not tell whether the user exists.
	dummy string
	// derivations counts the key derivations run. Every login attempt
	// costs exactly one (a hash upgrade one more); tests check that here,
	// not by the clock.
	derivations atomic.Int64
}

func newPasswords(p argon2Params) *passwords {
	return &passwords{
		params: p,
		slots:  make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		// A random key that no password derives: nothing needs hashing.
		dummy: p.format(random(saltLen), random(keyLen)),
	}
}

// random returns n random bytes (crypto/rand.Read does not fail: a
// system without randomness ends the program).
func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (p argon2Params) format(salt, key []byte) string {
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		enc.EncodeToString(salt), enc.EncodeToString(key))
}

// hash returns pw's hash in the current scheme.
func (pws *passwords) hash(ctx context.Context, pw string) (string, error) {
	salt := random(saltLen)
	key, err := pws.derive(ctx, func() ([]byte, error) {
		return argon2.IDKey([]byte(pw), salt, pws.params.time, pws.params.memory, pws.params.threads, keyLen), nil
	})
	if err != nil {
		return "", err
	}
	return pws.params.format(salt, key), nil
}

// verify reports whether pw matches the stored hash, and whether that hash
// should be replaced by one in the current scheme. An empty or unreadable
// stored hash matches nothing, at the cost of any other.
func (pws *passwords) verify(ctx context.Context, stored, pw string) (ok, rehash bool, err error) {
	derive, want, current := pws.parse(stored)
	usable := derive != nil
	if !usable {
		derive, want, _ = pws.parse(pws.dummy)
	}
	got, err := pws.derive(ctx, func() ([]byte, error) { return derive(pw, len(want)) })
	if err != nil {
		return false, false, err
	}
	match := subtle.ConstantTimeCompare(got, want) == 1
	return usable && match, usable && !current, nil
}

// parse reads a stored hash: the derivation it names, the key it holds,
// and whether it is of the current scheme and parameters. derive is nil
// for a hash it cannot read.
func (pws *passwords) parse(stored string) (derive func(pw string, n int) ([]byte, error), key []byte, current bool) {
	if strings.HasPrefix(stored, "$argon2id$") {
		parts := strings.Split(stored, "$") // "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
		var p argon2Params
		var version int
		if len(parts) != 6 {
			return nil, nil, false
		}
		if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
			return nil, nil, false
		}
		if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil || p.time == 0 || p.threads == 0 {
			return nil, nil, false
		}
		salt, err := base64.RawStdEncoding.DecodeString(parts[4])
		if err != nil {
			return nil, nil, false
		}
		if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) == 0 {
			return nil, nil, false
		}
		return func(pw string, n int) ([]byte, error) {
			return argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, uint32(n)), nil
		}, key, p == pws.params
	}
	parts := strings.Split(stored, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return nil, nil, false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxPBKDF2Iter {
		return nil, nil, false
	}
	salt, err := hex.DecodeString(parts[2])
	if err != nil {
		return nil, nil, false
	}
	if key, err = hex.DecodeString(parts[3]); err != nil || len(key) == 0 {
		return nil, nil, false
	}
	return func(pw string, n int) ([]byte, error) {
		return pbkdf2.Key(sha256.New, pw, salt, iter, n)
	}, key, false
}

// derive runs one key derivation when a slot is free.
func (pws *passwords) derive(ctx context.Context, fn func() ([]byte, error)) ([]byte, error) {
	select {
	case pws.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-pws.slots }()
	pws.derivations.Add(1)
	key, err := fn()
	if err != nil {
		return nil, fmt.Errorf("identity: password: %w", err)
	}
	return key, nil
}

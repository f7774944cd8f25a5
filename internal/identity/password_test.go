package identity

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"neutrino/internal/store"
)

// legacyHash is a password hash as Neutrino stored them before argon2id.
func legacyHash(t *testing.T, pw string, iter int) string {
	t.Helper()
	salt := []byte("0123456789abcdef")
	key, err := pbkdf2.Key(sha256.New, pw, salt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	return "pbkdf2-sha256$" + strconv.Itoa(iter) + "$" + hex.EncodeToString(salt) + "$" + hex.EncodeToString(key)
}

func TestPasswordHashes(t *testing.T) {
	ctx := context.Background()
	pws := newPasswords(testArgon2)
	current, err := pws.hash(ctx, "secret")
	if err != nil {
		t.Fatal(err)
	}
	older, err := newPasswords(argon2Params{time: 2, memory: 64, threads: 1}).hash(ctx, "secret")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, stored, pw string
		ok, rehash       bool
	}{
		{"current scheme", current, "secret", true, false},
		{"current scheme, wrong password", current, "guess", false, false},
		{"argon2id with other parameters", older, "secret", true, true},
		{"legacy PBKDF2", legacyHash(t, "secret", 20000), "secret", true, true},
		{"legacy PBKDF2, wrong password", legacyHash(t, "secret", 20000), "guess", false, true},
		{"no password", "", "", false, false},
		{"unreadable", "$argon2id$v=19$m=64,t=1,p=1$!!$!!", "secret", false, false},
		{"unknown scheme", "md5$abc", "secret", false, false},
		{"absurd legacy cost", "pbkdf2-sha256$999999999$00$00", "secret", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := pws.derivations.Load()
			ok, rehash, err := pws.verify(ctx, c.stored, c.pw)
			if err != nil || ok != c.ok || rehash != c.rehash {
				t.Errorf("verify: ok %v rehash %v err %v, want ok %v rehash %v", ok, rehash, err, c.ok, c.rehash)
			}
			// An unusable hash costs what a usable one does.
			if n := pws.derivations.Load() - before; n != 1 {
				t.Errorf("%d key derivations, want 1", n)
			}
		})
	}
	if _, _, current := pws.parse(pws.dummy); !current {
		t.Errorf("the dummy hash %q is not of the current parameters", pws.dummy)
	}
}

// TestDefaultPasswordHash: a new server hashes with OWASP's argon2id
// parameters (one real hash: about 22 ms here).
func TestDefaultPasswordHash(t *testing.T) {
	b := NewBuiltin(nil)
	h, err := b.pw.hash(context.Background(), "secret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("default hash %q", h)
	}
	if _, _, current := b.pw.parse(b.pw.dummy); !current {
		t.Errorf("the dummy hash %q is not of the default parameters", b.pw.dummy)
	}
}

// TestLoginCostsOneDerivationWhateverFails: whether the user exists or not,
// and whatever else is wrong, a password login runs one key derivation with
// the current parameters, so its time does not tell which user names exist.
func TestLoginCostsOneDerivationWhateverFails(t *testing.T) {
	b, srv := newBuiltin(t)
	admin := loginToken(t, srv, "admin", "adminpw", "admin")
	ok := newMember(t, srv, admin, "known")
	disabledUser := newMember(t, srv, admin, "disableduser")
	disabledProject := newMember(t, srv, admin, "disabledproject")
	noRole := newMember(t, srv, admin, "norole")
	headers := map[string]string{"X-Auth-Token": admin}
	for _, step := range []struct{ method, path string }{
		{"PATCH", "/v3/users/" + disabledUser.user},
		{"PATCH", "/v3/projects/" + disabledProject.project},
		{"DELETE", "/v3/projects/" + noRole.project + "/users/" + noRole.user + "/roles/" + noRole.role},
	} {
		body := map[string]any{"user": map[string]any{"enabled": false}}
		if strings.HasPrefix(step.path, "/v3/projects/") {
			body = map[string]any{"project": map[string]any{"enabled": false}}
		}
		if st, out := request(t, srv, step.method, step.path, headers, body); st >= 300 {
			t.Fatalf("%s %s: %d %v", step.method, step.path, st, out)
		}
	}
	st, created := request(t, srv, "POST", "/v3/users", headers, map[string]any{"user": map[string]any{"name": "nopassword"}})
	if st != http.StatusCreated {
		t.Fatalf("user without password: %d", st)
	}
	noPassword := created["user"].(map[string]any)["id"].(string)
	if st, _ := request(t, srv, "PUT", "/v3/projects/"+ok.project+"/users/"+noPassword+"/roles/"+ok.role, headers, nil); st != http.StatusNoContent {
		t.Fatalf("assign: %d", st)
	}
	byID := func(id, pw, project string) map[string]any {
		return map[string]any{"auth": map[string]any{
			"identity": map[string]any{"methods": []any{"password"}, "password": map[string]any{"user": map[string]any{"id": id, "password": pw}}},
			"scope":    map[string]any{"project": map[string]any{"id": project}}}}
	}
	cases := []struct {
		name string
		body map[string]any
		want int
	}{
		{"known user, right password", login("known", "pw-known", "known"), http.StatusCreated},
		{"known user, wrong password", login("known", "guess", "known"), http.StatusUnauthorized},
		{"unknown user name", login("nobody", "guess", "known"), http.StatusUnauthorized},
		{"unknown user id", byID("0123456789abcdef0123456789abcdef", "guess", ok.project), http.StatusUnauthorized},
		{"unknown project", login("known", "pw-known", "noproject"), http.StatusUnauthorized},
		{"disabled user", login("disableduser", "pw-disableduser", "disableduser"), http.StatusUnauthorized},
		{"disabled project", login("disabledproject", "pw-disabledproject", "disabledproject"), http.StatusUnauthorized},
		{"no role in the project", login("norole", "pw-norole", "norole"), http.StatusUnauthorized},
		{"user without password, empty password", byID(noPassword, "", ok.project), http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := b.pw.derivations.Load()
			st, _, out := call(t, srv, "POST", "/v3/auth/tokens", "", c.body)
			if st != c.want {
				t.Errorf("login: %d %v, want %d", st, out, c.want)
			}
			if n := b.pw.derivations.Load() - before; n != 1 {
				t.Errorf("%d key derivations, want 1", n)
			}
		})
	}
}

// TestLegacyHashLogsInAndIsUpgraded: a user whose password was hashed with
// the old PBKDF2 scheme still logs in, and the hash is replaced by one in
// the current scheme at that login.
func TestLegacyHashLogsInAndIsUpgraded(t *testing.T) {
	b, srv := newBuiltin(t)
	ctx := context.Background()
	old := legacyHash(t, "demopw", 20000)
	if _, err := b.DB.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec("UPDATE id_users SET password_hash = ? WHERE name = 'demo'", old)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stored := func() string {
		t.Helper()
		var h string
		if err := b.DB.Read(ctx, func(tx *store.Tx) error {
			return tx.QueryRow("SELECT password_hash FROM id_users WHERE name = 'demo'").Scan(&h)
		}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if st, _, _ := call(t, srv, "POST", "/v3/auth/tokens", "", login("demo", "wrong", "demo")); st != http.StatusUnauthorized {
		t.Fatalf("wrong password against a legacy hash: %d", st)
	}
	if stored() != old {
		t.Fatal("a failed login replaced the hash")
	}
	before := b.pw.derivations.Load()
	loginToken(t, srv, "demo", "demopw", "demo")
	if n := b.pw.derivations.Load() - before; n != 2 {
		t.Errorf("first login: %d key derivations, want 2 (verify, rehash)", n)
	}
	upgraded := stored()
	if _, _, current := b.pw.parse(upgraded); !current {
		t.Fatalf("hash after login: %q, want the current scheme", upgraded)
	}
	before = b.pw.derivations.Load()
	loginToken(t, srv, "demo", "demopw", "demo")
	if n := b.pw.derivations.Load() - before; n != 1 {
		t.Errorf("second login: %d key derivations, want 1", n)
	}
	if stored() != upgraded {
		t.Error("a current hash was replaced")
	}
}

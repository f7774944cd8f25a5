package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"neutrino/internal/policy"
	"neutrino/internal/store"
)

// DefaultDomain is the one domain the built-in identity has.
const DefaultDomain = "default"

// Builtin is the Keystone v3-compatible identity service.
type Builtin struct {
	DB *store.DB
	// PublicURL is the base URL clients reach Neutrino at (for the catalog).
	PublicURL func(r *http.Request) string
	// LoadBalancerURL, when set, is the load-balancer endpoint's (the
	// catalog's load-balancer service).
	LoadBalancerURL string
	// KeyManagerURL, when set, is the key-manager endpoint's (the
	// catalog's key-manager service).
	KeyManagerURL string
	Region        string
	TokenTTL      time.Duration

	// Log receives the causes of failed requests (nil: slog's default).
	Log *slog.Logger

	// ClientAddr names the client of a request for the failed-login
	// throttle (nil: the host of RemoteAddr). Behind a reverse proxy every
	// client is the proxy unless this reads the address it forwards.
	ClientAddr func(r *http.Request) string

	pw                     *passwords
	userLogins, addrLogins *throttle

	mu     sync.Mutex
	tokens map[string]*token // sha256(token) -> token, as of its rev
}

type token struct {
	UserID, UserName, ProjectID, ProjectName string
	Roles                                    []role
	Issued, Expires                          time.Time
	Methods                                  []string
	// rev is the identity revision this copy is current at: the cached
	// copy is trusted while the identity revision has not moved.
	rev int64
}

// maxCached bounds the token cache; past it, entries that are expired or
// no longer current are dropped, and if that is not enough, all of them (a
// cache miss costs one read).
const maxCached = 100000

type role struct{ ID, Name string }

// NewBuiltin returns the built-in identity over db.
func NewBuiltin(db *store.DB) *Builtin {
	return &Builtin{DB: db, Region: "RegionOne", TokenTTL: 12 * time.Hour, tokens: map[string]*token{},
		pw: newPasswords(defaultArgon2), userLogins: newUserThrottle(), addrLogins: newAddrThrottle()}
}

// --- bootstrap -------------------------------------------------------------

// Bootstrap makes the admin and demo projects, users and roles if missing.
// It returns true if anything was created.
func (b *Builtin) Bootstrap(ctx context.Context, adminPassword, demoPassword string) (bool, error) {
	created := false
	err := b.change(ctx, func(tx *store.Tx) error {
		roles := map[string]string{}
		for _, name := range []string{"admin", "member", "reader", "service"} {
			id, err := ensureRole(tx, name)
			if err != nil {
				return err
			}
			roles[name] = id
		}
		for _, spec := range []struct {
			project, user, pw string
			roles             []string
		}{
			{"admin", "admin", adminPassword, []string{"admin", "member", "reader"}},
			{"demo", "demo", demoPassword, []string{"member", "reader"}},
			{"service", "neutrino", adminPassword, []string{"admin", "service"}},
		} {
			pid, made, err := ensureProject(tx, spec.project)
			if err != nil {
				return err
			}
			created = created || made
			uid, made, err := b.ensureUser(ctx, tx, spec.user, spec.pw, pid)
			if err != nil {
				return err
			}
			created = created || made
			for _, r := range spec.roles {
				if err := assign(tx, uid, pid, roles[r]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return created, err
}

// PasswordMatches reports whether user (of the default domain) exists with
// password pw. Bootstrap keeps users that exist: a server bootstrapping a
// database that another already did (PostgreSQL shared by several servers)
// may hold other passwords than the ones it was given.
func (b *Builtin) PasswordMatches(ctx context.Context, user, pw string) (bool, error) {
	var hash string
	err := b.DB.Read(ctx, func(tx *store.Tx) error {
		return tx.QueryRow("SELECT password_hash FROM id_users WHERE domain_id = ? AND name = ?", DefaultDomain, user).Scan(&hash)
	})
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	ok, _, err := b.pw.verify(ctx, hash, pw)
	return ok, err
}

// ensure returns the id of the row that lookup (a SELECT of its id)
// finds, or makes one with insert; made says it did.
func ensure(tx *store.Tx, lookup string, args []any, insert func(id string) error) (id string, made bool, err error) {
	err = tx.QueryRow(lookup, args...).Scan(&id)
	if err == nil {
		return id, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", false, err
	}
	id = newID()
	return id, true, insert(id)
}

func ensureRole(tx *store.Tx, name string) (string, error) {
	id, _, err := ensure(tx, "SELECT id FROM id_roles WHERE name = ?", []any{name}, func(id string) error {
		_, err := tx.Exec("INSERT INTO id_roles (id, name) VALUES (?, ?)", id, name)
		return err
	})
	return id, err
}

func ensureProject(tx *store.Tx, name string) (string, bool, error) {
	return ensure(tx, "SELECT id FROM id_projects WHERE domain_id = ? AND name = ?", []any{DefaultDomain, name}, func(id string) error {
		_, err := tx.Exec("INSERT INTO id_projects (id, name, domain_id, description, enabled, parent_id, is_domain) VALUES (?, ?, ?, ?, ?, ?, ?)",
			id, name, DefaultDomain, "", true, DefaultDomain, false)
		return err
	})
}

// ensureUser hashes the password inside the write: this happens once, at
// the first start.
func (b *Builtin) ensureUser(ctx context.Context, tx *store.Tx, name, pw, project string) (string, bool, error) {
	return ensure(tx, "SELECT id FROM id_users WHERE domain_id = ? AND name = ?", []any{DefaultDomain, name}, func(id string) error {
		h, err := b.pw.hash(ctx, pw)
		if err != nil {
			return err
		}
		_, err = tx.Exec("INSERT INTO id_users (id, name, domain_id, password_hash, enabled, default_project_id, description, email) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			id, name, DefaultDomain, h, true, project, "", "")
		return err
	})
}

func assign(tx *store.Tx, user, project, roleID string) error {
	var n int
	if err := tx.QueryRow("SELECT COUNT(*) FROM id_assignments WHERE user_id = ? AND project_id = ? AND role_id = ?", user, project, roleID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := tx.Exec("INSERT INTO id_assignments (user_id, project_id, role_id) VALUES (?, ?, ?)", user, project, roleID)
	return err
}

func newID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

// --- tokens ------------------------------------------------------------------

func tokenKey(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func (b *Builtin) rolesOf(tx *store.Tx, user, project string) ([]role, error) {
	return store.Collect(tx, "SELECT r.id, r.name FROM id_assignments a JOIN id_roles r ON r.id = a.role_id WHERE a.user_id = ? AND a.project_id = ? ORDER BY r.name",
		[]any{user, project}, func(scan func(...any) error) (role, error) {
			var r role
			err := scan(&r.ID, &r.Name)
			return r, err
		})
}

// lookup validates a token string: errUnauthorized for a token that is
// not (or no longer) valid, another error when the store failed.
func (b *Builtin) lookup(ctx context.Context, tok string) (*token, error) {
	if tok == "" {
		return nil, errUnauthorized
	}
	k := tokenKey(tok)
	var t *token
	err := b.DB.Read(ctx, func(tx *store.Tx) error {
		rev, err := currentRevision(tx)
		if err != nil {
			return err
		}
		b.mu.Lock()
		cached := b.tokens[k]
		b.mu.Unlock()
		if cached != nil && cached.rev == rev {
			t = cached
			return nil
		}
		// Not cached, or identity changed since: read it again (another
		// server may also have issued it).
		nt := &token{rev: rev, Methods: []string{"password"}}
		var issued, expires int64
		err = tx.QueryRow(`SELECT t.user_id, u.name, t.project_id, p.name, t.issued_at, t.expires_at FROM id_tokens t
JOIN id_users u ON u.id = t.user_id JOIN id_projects p ON p.id = t.project_id
WHERE t.id = ? AND u.enabled AND p.enabled`, k).
			Scan(&nt.UserID, &nt.UserName, &nt.ProjectID, &nt.ProjectName, &issued, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return errUnauthorized
		}
		if err != nil {
			return fmt.Errorf("identity: token: %w", err)
		}
		if nt.Roles, err = b.rolesOf(tx, nt.UserID, nt.ProjectID); err != nil {
			return fmt.Errorf("identity: roles: %w", err)
		}
		if len(nt.Roles) == 0 {
			return errUnauthorized
		}
		nt.Issued, nt.Expires = time.Unix(issued, 0), time.Unix(expires, 0)
		t = nt
		b.remember(k, t)
		return nil
	})
	if errors.Is(err, errUnauthorized) {
		b.mu.Lock()
		delete(b.tokens, k)
		b.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	if time.Now().After(t.Expires) {
		return nil, errUnauthorized
	}
	return t, nil
}

// remember caches t under key k.
func (b *Builtin) remember(k string, t *token) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.tokens) >= maxCached {
		now := time.Now()
		for key, c := range b.tokens {
			if c.rev != t.rev || now.After(c.Expires) {
				delete(b.tokens, key)
			}
		}
		if len(b.tokens) >= maxCached {
			clear(b.tokens)
		}
	}
	b.tokens[k] = t
}

var errUnauthorized = errors.New("identity: the request you have made requires authentication")

// Authenticate implements Authenticator.
func (b *Builtin) Authenticate(ctx context.Context, r *http.Request) (*policy.Caller, error) {
	t, err := b.lookup(ctx, r.Header.Get("X-Auth-Token"))
	if err != nil {
		return nil, err
	}
	return t.caller(), nil
}

func (t *token) caller() *policy.Caller {
	c := &policy.Caller{UserID: t.UserID, UserName: t.UserName, ProjectID: t.ProjectID}
	for _, r := range t.Roles {
		c.Roles = append(c.Roles, r.Name)
	}
	c.Admin = c.HasRole("admin")
	c.Service = c.HasRole("service")
	return c
}

// TokenFor issues a token for a user and project without a password, for
// in-process tools (the embedded benchmark); it is not reachable over HTTP.
func (b *Builtin) TokenFor(ctx context.Context, userName, projectName string) (string, error) {
	var t token
	err := b.DB.Read(ctx, func(tx *store.Tx) error {
		var err error
		if t.rev, err = currentRevision(tx); err != nil {
			return err
		}
		if err := tx.QueryRow("SELECT id, name FROM id_users WHERE domain_id = ? AND name = ?", DefaultDomain, userName).Scan(&t.UserID, &t.UserName); err != nil {
			return err
		}
		if err := tx.QueryRow("SELECT id, name FROM id_projects WHERE domain_id = ? AND name = ?", DefaultDomain, projectName).Scan(&t.ProjectID, &t.ProjectName); err != nil {
			return err
		}
		t.Roles, err = b.rolesOf(tx, t.UserID, t.ProjectID)
		return err
	})
	if err != nil {
		return "", err
	}
	tok, _, err := b.store(ctx, &t, nil)
	return tok, err
}

// Issue authenticates a user by password for a project and returns a
// token: errUnauthorized when the credentials do not give one, another
// error when the store failed.
//
// Whatever is wrong (no such user or project, disabled, no role, wrong
// password), it runs the same queries and exactly one key derivation with
// the current parameters, so that the time a failed login takes does not
// tell an unknown user name from a known one.
func (b *Builtin) Issue(ctx context.Context, userName, userID, password, projectName, projectID string) (string, *token, error) {
	var t token
	var hash string
	var userEnabled, projectEnabled bool
	err := b.DB.Read(ctx, func(tx *store.Tx) error {
		var err error
		if t.rev, err = currentRevision(tx); err != nil {
			return err
		}
		q, arg := "SELECT id, name, password_hash, enabled, default_project_id FROM id_users WHERE id = ?", userID
		if userID == "" {
			q, arg = "SELECT id, name, password_hash, enabled, default_project_id FROM id_users WHERE domain_id = '"+DefaultDomain+"' AND name = ?", userName
		}
		var defProject string
		err = tx.QueryRow(q, arg).Scan(&t.UserID, &t.UserName, &hash, &userEnabled, &defProject)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if projectID == "" && projectName == "" {
			projectID = defProject
		}
		pq, parg := "SELECT id, name, enabled FROM id_projects WHERE id = ?", projectID
		if projectID == "" {
			pq, parg = "SELECT id, name, enabled FROM id_projects WHERE domain_id = '"+DefaultDomain+"' AND name = ?", projectName
		}
		err = tx.QueryRow(pq, parg).Scan(&t.ProjectID, &t.ProjectName, &projectEnabled)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		t.Roles, err = b.rolesOf(tx, t.UserID, t.ProjectID)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("identity: login: %w", err)
	}
	ok, rehash, err := b.pw.verify(ctx, hash, password)
	if err != nil {
		return "", nil, err
	}
	if !ok || !userEnabled || !projectEnabled || len(t.Roles) == 0 {
		return "", nil, errUnauthorized
	}
	var upgrade func(tx *store.Tx) error
	if rehash {
		h, err := b.pw.hash(ctx, password)
		if err != nil {
			return "", nil, err
		}
		// Unless the password changed meanwhile.
		upgrade = func(tx *store.Tx) error {
			_, err := tx.Exec("UPDATE id_users SET password_hash = ? WHERE id = ? AND password_hash = ?", h, t.UserID, hash)
			return err
		}
	}
	return b.store(ctx, &t, upgrade)
}

// rescope issues a token for the user of token old, scoped to the project
// given by id or name (old's own when neither is given), as the token
// authentication method does; it ends when old does.
func (b *Builtin) rescope(ctx context.Context, old, projectID, projectName string) (string, *token, error) {
	from, err := b.lookup(ctx, old)
	if err != nil {
		return "", nil, err
	}
	t := token{UserID: from.UserID, UserName: from.UserName, ProjectID: from.ProjectID, ProjectName: from.ProjectName,
		Methods: []string{"token"}, Expires: from.Expires}
	err = b.DB.Read(ctx, func(tx *store.Tx) error {
		var err error
		if t.rev, err = currentRevision(tx); err != nil {
			return err
		}
		q, arg := "SELECT id, name, enabled FROM id_projects WHERE id = ?", t.ProjectID
		switch {
		case projectID != "":
			arg = projectID
		case projectName != "":
			q, arg = "SELECT id, name, enabled FROM id_projects WHERE domain_id = '"+DefaultDomain+"' AND name = ?", projectName
		}
		var enabled bool
		err = tx.QueryRow(q, arg).Scan(&t.ProjectID, &t.ProjectName, &enabled)
		if errors.Is(err, sql.ErrNoRows) || err == nil && !enabled {
			return errUnauthorized
		}
		if err != nil {
			return err
		}
		t.Roles, err = b.rolesOf(tx, t.UserID, t.ProjectID)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	if len(t.Roles) == 0 {
		return "", nil, errUnauthorized
	}
	return b.store(ctx, &t, nil)
}

// store issues token t, running also (if set) in the same write.
func (b *Builtin) store(ctx context.Context, t *token, also func(tx *store.Tx) error) (string, *token, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	tok := "nt" + base64.RawURLEncoding.EncodeToString(raw)
	t.Issued = time.Now().UTC().Truncate(time.Second)
	if t.Expires.IsZero() || t.Expires.After(t.Issued.Add(b.TokenTTL)) {
		t.Expires = t.Issued.Add(b.TokenTTL)
	}
	if t.Methods == nil {
		t.Methods = []string{"password"}
	}
	k := tokenKey(tok)
	_, err := b.DB.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec("DELETE FROM id_tokens WHERE expires_at < ?", time.Now().Unix()); err != nil {
			return err
		}
		if _, err := tx.Exec("INSERT INTO id_tokens (id, user_id, project_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
			k, t.UserID, t.ProjectID, t.Issued.Unix(), t.Expires.Unix()); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	// Cached at the identity revision read before its user, project and
	// roles were: a change since then has it read again at its first use.
	b.remember(k, t)
	return tok, t, nil
}

// Revoke invalidates a token, on every server sharing the database.
func (b *Builtin) Revoke(ctx context.Context, tok string) error {
	k := tokenKey(tok)
	return b.change(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec("DELETE FROM id_tokens WHERE id = ?", k)
		return err
	})
}

func (b *Builtin) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

// ServeHTTP serves /v3.
func (b *Builtin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.route(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

func keystoneError(w http.ResponseWriter, status int, title, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "title": title, "message": msg}})
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// Package keymanager is a key manager: the subset of Barbican's v1 API
// that TLS termination needs (secrets, certificate containers, ACLs),
// served on the key-manager endpoint. Payloads are encrypted at rest
// (AES-256-GCM, bound to their secret's id) with a key kept in a file of
// the server's data directory; the store never holds them in the clear.
//
// Other services read certificates through Certificate and Secret, which
// apply the same access rules as the API (the caller's project, or the
// ACL naming the caller).
package keymanager

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/policy"
)

// Store kinds: secrets and containers, each with its ACL.
const (
	secretKind    = "km_secret"
	containerKind = "km_container"
)

// Config is the service's configuration.
type Config struct {
	// KeyFile holds the key that encrypts payloads (made, 32 random bytes
	// readable by the owner alone, when missing). Empty: a key in memory,
	// for tests (payloads do not outlive the process then).
	KeyFile string
}

// Service is the key-manager service plugin.
type Service struct {
	cfg  Config
	aead cipher.AEAD
}

// New returns the key-manager service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Name implements plugin.Service.
func (s *Service) Name() string { return "key-manager" }

// Register implements plugin.Service.
func (s *Service) Register(r *plugin.Registry) error {
	key, err := loadKey(s.cfg.KeyFile)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	if s.aead, err = cipher.NewGCM(block); err != nil {
		return err
	}
	for _, rt := range []*plugin.Route{
		{Method: "POST", Path: "secrets", Serve: s.storeSecret},
		{Method: "GET", Path: "secrets", Serve: s.listSecrets},
		{Method: "GET", Path: "secrets/{}", Serve: s.getSecret},
		{Method: "PUT", Path: "secrets/{}", Serve: s.putPayload},
		{Method: "DELETE", Path: "secrets/{}", Serve: s.deleteSecret},
		{Method: "GET", Path: "secrets/{}/payload", Serve: s.getPayload},
		{Method: "POST", Path: "containers", Serve: s.createContainer},
		{Method: "GET", Path: "containers", Serve: s.listContainers},
		{Method: "GET", Path: "containers/{}", Serve: s.getContainer},
		{Method: "DELETE", Path: "containers/{}", Serve: s.deleteContainer},
	} {
		rt.Endpoint = plugin.KeyManagerEndpoint
		r.Route(rt)
	}
	for _, kind := range []string{"secrets", "containers"} {
		for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			r.Route(&plugin.Route{Method: m, Path: kind + "/{}/acl", Endpoint: plugin.KeyManagerEndpoint, Serve: s.serveACL(kind)})
		}
	}
	return nil
}

// loadKey reads the payload key from path, making it on first use.
func loadKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	if path == "" {
		_, err := rand.Read(key)
		return key, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("key manager: %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("key manager: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("key manager: %s holds %d bytes, not a 32-byte key", path, len(b))
	}
	return b, nil
}

// seal encrypts a secret's payload, bound to its id (nonce and
// ciphertext, in base64, as the store keeps it).
func (s *Service) seal(id string, payload []byte) string {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, payload, []byte(id)))
}

// open decrypts what seal made.
func (s *Service) open(id, stored string) ([]byte, error) {
	sealed, err := base64.StdEncoding.DecodeString(stored)
	n := s.aead.NonceSize()
	if err != nil || len(sealed) < n {
		return nil, errors.New("key manager: sealed payload too short")
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("key manager: payload of secret %s does not decrypt with this key: %w", id, err)
	}
	return out, nil
}

// now is Barbican's timestamp format (UTC without a zone, as Python's
// isoformat: microseconds unless they are zero).
func now() string { return isoformat(time.Now()) }

func isoformat(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04:05.000000")
}

// writable reports whether caller may change or delete o: its project's
// users.
func writable(caller *policy.Caller, o plugin.Object) bool {
	return caller.Service || caller.ProjectID == attr.Str(o, "project_id")
}

func notFound(format string, args ...any) error {
	return fault.New(http.StatusNotFound, "NotFound", format, args...)
}

func badRequest(format string, args ...any) error {
	return fault.New(http.StatusBadRequest, "BadRequest", format, args...)
}

// schemaError is Barbican's answer to a body its schema refuses.
func schemaError(schema, property, format string, args ...any) error {
	return badRequest("Provided object does not match schema '%s': %s. Invalid property: '%s'", schema, fmt.Sprintf(format, args...), property)
}

// notAllowed is Barbican's 403 for an attempt on another project's
// object ("Secret retrieval", "Container deletion", ...).
func notAllowed(what string) error {
	return fault.New(http.StatusForbidden, "Forbidden", "%s attempt not allowed - please review your user/project privileges", what)
}

// validID reports whether id is a canonical (lowercase, version 4) UUID,
// the only ids Barbican looks up.
func validID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.Version() == 4 && u.String() == id
}

// decode reads a JSON body as Barbican does: JSON only (415 otherwise),
// well formed.
func decode(req *plugin.Request, v any) error {
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/json" {
		return fault.New(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Unexpected content type. Expected content types are: ['application/json']")
	}
	body, err := req.Body()
	if err != nil {
		return err
	}
	if json.Unmarshal(body, v) != nil {
		return badRequest("Malformed JSON")
	}
	return nil
}

func conflict(format string, args ...any) error {
	return fault.New(http.StatusConflict, "Conflict", format, args...)
}

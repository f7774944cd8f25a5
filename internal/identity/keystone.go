package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"neutrino/internal/policy"
)

// Keystone validates tokens against an external Keystone v3 with a service
// user, as keystonemiddleware does, caching each validated token until it
// expires (and a rejected one for a few seconds).
type Keystone struct {
	URL, User, Password, Project string
	Client                       *http.Client

	mu       sync.Mutex
	svcToken string
	svcUntil time.Time
	cache    map[string]ksEntry
}

type ksEntry struct {
	caller *policy.Caller
	until  time.Time
}

// negativeTTL is how long a rejected token stays rejected without asking;
// positiveTTL bounds how long a validated one is trusted before Keystone is
// asked again (keystonemiddleware's token_cache_time), so revocations
// take effect.
const (
	negativeTTL = 5 * time.Second
	positiveTTL = 5 * time.Minute
)

// NewKeystone returns a validator for the Keystone at url (…/v3).
func NewKeystone(url, user, password, project string) *Keystone {
	return &Keystone{URL: strings.TrimSuffix(url, "/"), User: user, Password: password, Project: project,
		Client: &http.Client{Timeout: 15 * time.Second}, cache: map[string]ksEntry{}}
}

type ksToken struct {
	Token struct {
		ExpiresAt string `json:"expires_at"`
		User      struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"user"`
		Project struct {
			ID string `json:"id"`
		} `json:"project"`
		Roles []struct {
			Name string `json:"name"`
		} `json:"roles"`
	} `json:"token"`
}

func (k *Keystone) serviceToken(ctx context.Context, renew bool) (string, error) {
	k.mu.Lock()
	if !renew && k.svcToken != "" && time.Now().Before(k.svcUntil) {
		t := k.svcToken
		k.mu.Unlock()
		return t, nil
	}
	k.mu.Unlock()
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
			"name": k.User, "password": k.Password, "domain": map[string]any{"name": "Default"}}}},
		"scope": map[string]any{"project": map[string]any{"name": k.Project, "domain": map[string]any{"name": "Default"}}},
	}}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.URL+"/auth/tokens", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("identity: keystone: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("identity: keystone service login: HTTP %d", resp.StatusCode)
	}
	var t ksToken
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return "", fmt.Errorf("identity: keystone: %w", err)
	}
	exp, _ := time.Parse(time.RFC3339Nano, t.Token.ExpiresAt)
	k.mu.Lock()
	k.svcToken = resp.Header.Get("X-Subject-Token")
	k.svcUntil = exp.Add(-time.Minute)
	tok := k.svcToken
	k.mu.Unlock()
	return tok, nil
}

// Authenticate implements Authenticator.
func (k *Keystone) Authenticate(ctx context.Context, r *http.Request) (*policy.Caller, error) {
	tok := r.Header.Get("X-Auth-Token")
	if tok == "" {
		return nil, errUnauthorized
	}
	key := tokenKey(tok)
	k.mu.Lock()
	e, ok := k.cache[key]
	k.mu.Unlock()
	if ok && time.Now().Before(e.until) {
		if e.caller == nil {
			return nil, errUnauthorized
		}
		return e.caller, nil
	}
	c, until, err := k.validate(ctx, tok)
	if err != nil && !errors.Is(err, errUnauthorized) {
		return nil, err
	}
	k.mu.Lock()
	if len(k.cache) > 100000 {
		k.cache = map[string]ksEntry{}
	}
	if c == nil {
		until = time.Now().Add(negativeTTL)
	} else if cap := time.Now().Add(positiveTTL); until.After(cap) {
		until = cap
	}
	k.cache[key] = ksEntry{caller: c, until: until}
	k.mu.Unlock()
	if c == nil {
		return nil, errUnauthorized
	}
	return c, nil
}

func (k *Keystone) validate(ctx context.Context, tok string) (*policy.Caller, time.Time, error) {
	for attempt := 0; attempt < 2; attempt++ {
		svc, err := k.serviceToken(ctx, attempt > 0)
		if err != nil {
			return nil, time.Time{}, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL+"/auth/tokens", nil)
		if err != nil {
			return nil, time.Time{}, err
		}
		req.Header.Set("X-Auth-Token", svc)
		req.Header.Set("X-Subject-Token", tok)
		resp, err := k.Client.Do(req)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("identity: keystone: %w", err)
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			resp.Body.Close()
			continue // the service token expired: log in again
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, time.Time{}, errUnauthorized
		}
		var t ksToken
		err = json.NewDecoder(resp.Body).Decode(&t)
		resp.Body.Close()
		if err != nil {
			return nil, time.Time{}, errUnauthorized
		}
		exp, err := time.Parse(time.RFC3339Nano, t.Token.ExpiresAt)
		if err != nil || time.Now().After(exp) {
			return nil, time.Time{}, errUnauthorized
		}
		c := &policy.Caller{UserID: t.Token.User.ID, UserName: t.Token.User.Name, ProjectID: t.Token.Project.ID}
		for _, r := range t.Token.Roles {
			c.Roles = append(c.Roles, r.Name)
		}
		c.Admin = c.HasRole("admin")
		c.Service = c.HasRole("service")
		return c, exp, nil
	}
	return nil, time.Time{}, errUnauthorized
}

package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/policy"
)

// KeyManager serves the key-manager endpoint, a subset of Barbican's v1
// API (the Keystone catalog's key-manager service): /v1/... are the routes
// the services registered for plugin.KeyManagerEndpoint, with Barbican's
// version documents and error format.
func (s *Server) KeyManager() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), dialectKey{}, plugin.KeyManagerEndpoint))
		w.Header().Set("X-Openstack-Request-Id", "req-"+plugin.NewID())
		base := s.baseURL(r)
		path := strings.Trim(r.URL.Path, "/")
		switch path {
		case "":
			writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{kmVersion(base)}}})
			return
		case "v1":
			writeJSON(w, http.StatusOK, map[string]any{"version": kmVersion(base)})
			return
		}
		parts := strings.Split(path, "/")
		if parts[0] != "v1" {
			s.writeError(w, r, notFoundErr)
			return
		}
		if r.ContentLength != 0 {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.bodyTimeout()))
		}
		caller, err := s.Auth.Authenticate(r.Context(), r)
		if err != nil {
			s.unauthorized(w, r)
			return
		}
		if !caller.Admin && !caller.Service && !s.LegacyPolicy && !kmAllowed(caller, r.Method) {
			s.writeError(w, r, fault.Forbidden("Forbidden: the role you hold on the project does not allow this request."))
			return
		}
		s.route(w, r.WithContext(policy.With(r.Context(), caller)), caller, false, parts[1:])
	})
}

// kmAllowed is Barbican's default policy by role, roughly: readers
// (observer, audit) read, members (creator) write.
func kmAllowed(c *policy.Caller, method string) bool {
	if c.HasRoleFold("member") || c.HasRoleFold("creator") {
		return true
	}
	return (method == http.MethodGet || method == http.MethodHead) &&
		(c.HasRoleFold("reader") || c.HasRoleFold("observer") || c.HasRoleFold("audit"))
}

// KMAPIVersion is the key-manager API's version (Barbican's v1, at the
// Zed release's microversion).
const KMAPIVersion = "1.1"

func kmVersion(base string) map[string]any {
	return map[string]any{"id": "v1", "status": "CURRENT", "min_version": "1.0", "max_version": KMAPIVersion,
		"links": []any{map[string]any{"rel": "self", "href": base + "/v1/"},
			map[string]any{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.key-manager-v1+json"}}}
}

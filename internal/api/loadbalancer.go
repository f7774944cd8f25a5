package api

import (
	"context"
	"net/http"
	"strings"

	"neutrino/internal/fault"
)

// LoadBalancer serves the load-balancer endpoint, Octavia's v2 API (the
// Keystone catalog's load-balancer service): /v2/lbaas/... are the
// resources the services registered under lbaas/ (the network endpoint
// serves them under /v2.0/lbaas/ too, as neutron-lbaas did), with
// Octavia's version documents and error format.
func (s *Server) LoadBalancer() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), dialectKey{}, "octavia"))
		base := s.baseURL(r)
		switch strings.TrimSuffix(r.URL.Path, "/") {
		case "":
			writeJSON(w, http.StatusOK, map[string]any{"versions": []any{lbVersion(base, "v2.0", "SUPPORTED"),
				lbVersion(base, LBAPIVersion, "CURRENT")}})
			return
		case "/v2", "/v2.0", "/v2/lbaas", "/v2.0/lbaas":
			writeJSON(w, http.StatusOK, "v2") // Octavia's answer, a bare string
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/lbaas/")
		if !ok {
			rest, ok = strings.CutPrefix(r.URL.Path, "/v2.0/lbaas/")
		}
		if !ok {
			s.writeError(w, r, fault.New(http.StatusNotFound, "HTTPNotFound", "The resource could not be found."))
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/v2.0/lbaas/" + rest
		s.serveAPI(w, r2)
	})
}

// LBAPIVersion is the newest version of Octavia's v2 API the endpoint
// answers as (Zed's).
const LBAPIVersion = "v2.26"

func lbVersion(base, id, status string) map[string]any {
	return map[string]any{"id": id, "status": status, "updated": "2022-08-29T00:00:00Z",
		"links": []any{map[string]any{"href": base + "/v2", "rel": "self"}}}
}

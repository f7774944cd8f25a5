// Package api serves the OpenStack Networking API v2.0 over HTTP: routing,
// authentication, Neutron's error format, and the generic collection
// machinery (create, show, list with filters/fields/sorting/pagination,
// update, delete, tags) driven by the schema package.
package api

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"neutrino/internal/fault"
	"neutrino/internal/identity"
	"neutrino/internal/jsonx"
	"neutrino/internal/plugin"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// Server is the HTTP API, built from what the services registered.
type Server struct {
	Reg  *plugin.Registry
	DB   *store.DB
	Auth identity.Authenticator
	// Identity, when set, serves the built-in Keystone subset under /v3.
	Identity *identity.Builtin
	Log      *slog.Logger

	mux      *http.ServeMux
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	registry *prometheus.Registry
	// Repoll is how often a long poll looks for commits by other servers
	// sharing the database (a commit here wakes it at once); default 1 s.
	Repoll time.Duration
	// BodyTimeout bounds the time a client may take to send a request's
	// body (default 30 s): a stalled body does not hold its connection.
	BodyTimeout time.Duration
	// LegacyPolicy is Neutron's policy before enforce_new_defaults: any
	// role on a project may write there. By default only member (or
	// admin, or service) may write and reader (or more) read.
	LegacyPolicy bool
	// interests holds, by host, what the state it was last given depends
	// on (*hostInterest).
	interests sync.Map
	hub       hostHub
	metrics   http.Handler
}

// maxBody bounds request bodies.
const maxBody = 4 << 20

// New builds the server's routes.
func New(reg *plugin.Registry, auth identity.Authenticator, ident *identity.Builtin, log *slog.Logger) *Server {
	s := &Server{Reg: reg, DB: reg.DB, Auth: auth, Identity: ident, Log: log, mux: http.NewServeMux()}
	s.registry = prometheus.NewRegistry()
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "neutrino_api_requests_total", Help: "API requests by method, collection and status."}, []string{"method", "collection", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "neutrino_api_request_seconds", Help: "API request latency.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}, []string{"method", "collection"})
	s.registry.MustRegister(s.requests, s.latency, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	for _, c := range reg.Collectors() {
		s.registry.MustRegister(c)
	}
	s.metrics = promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
	// On the API's listener the metrics are an admin's (serve Metrics()
	// on a listener of its own for a scraper without a token).
	s.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Auth.Authenticate(r.Context(), r)
		switch {
		case err != nil:
			s.unauthorized(w, r)
		case !c.Admin:
			s.writeError(w, r, fault.Forbidden("rule:get_metrics is disallowed by policy"))
		default:
			s.metrics.ServeHTTP(w, r)
		}
	})
	s.mux.HandleFunc("/", s.serveAPI)
	if ident != nil {
		s.mux.Handle("/v3", ident)
		s.mux.Handle("/v3/", ident)
		s.mux.HandleFunc("GET /identity", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusMultipleChoices, ident.VersionsDoc(r))
		})
	}
	return s
}

// Metrics serves the Prometheus metrics, without authentication.
func (s *Server) Metrics() http.Handler { return s.metrics }

// unauthorized answers 401 and closes the connection without reading what
// the client may still be sending.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", "Keystone uri='"+s.baseURL(r)+"/v3'")
	w.Header().Set("Connection", "close")
	http.NewResponseController(w).SetReadDeadline(time.Now())
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *Server) repoll() time.Duration {
	if s.Repoll > 0 {
		return s.Repoll
	}
	return time.Second
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONSized(w, status, v, 0)
}

// writeJSONSized is writeJSON for a body of about size bytes: a large one
// is encoded into a buffer of that size from the start, not one grown
// doubling after doubling (the copies were most of what listing 10,000
// ports cost).
func writeJSONSized(w http.ResponseWriter, status int, v any, size int) {
	bp := bodies.Get().(*[]byte)
	if size > cap(*bp) {
		bodies.Put(bp)
		big := make([]byte, 0, size+size/8)
		bp = &big
	}
	b, err := jsonx.Append((*bp)[:0], v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"NeutronError": {"type": "HTTPInternalServerError", "message": "encoding failed", "detail": ""}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
	if err == nil && cap(b) <= 1<<20 {
		*bp = b
		bodies.Put(bp)
	}
}

// bodies recycles response buffers: a list page is tens of kilobytes, and
// growing a fresh buffer for each was a large share of the garbage a read
// made.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// dialectKey marks a request to the load-balancer endpoint ("octavia"),
// whose errors are Octavia's, or to the key-manager endpoint
// (plugin.KeyManagerEndpoint), whose errors are Barbican's.
type dialectKey struct{}

// writeError renders err in Neutron's format (Octavia's on the
// load-balancer endpoint); unknown errors are 500s.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	fe, ok := fault.As(err)
	if !ok {
		s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		fe = &fault.Error{Status: http.StatusInternalServerError, Type: "HTTPInternalServerError",
			Message: "Request Failed: internal server error while processing your request."}
	}
	// Messages echo what was sent: never more than a few kilobytes of it.
	const most = 2048
	msg := fe.Message
	if len(msg) > most {
		msg = strings.ToValidUTF8(msg[:most], "") + "..."
	}
	switch r.Context().Value(dialectKey{}) {
	case plugin.KeyManagerEndpoint:
		writeJSON(w, fe.Status, map[string]any{"code": fe.Status, "title": http.StatusText(fe.Status), "description": msg})
		return
	case "octavia":
		code := "Client"
		if fe.Status >= 500 {
			code = "Server"
		}
		writeJSON(w, fe.Status, map[string]any{"faultcode": code, "faultstring": msg, "debuginfo": nil})
		return
	}
	writeJSON(w, fe.Status, map[string]any{"NeutronError": map[string]any{"type": fe.Type, "message": msg, "detail": fe.Detail}})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (sw *statusWriter) WriteHeader(c int) { sw.code = c; sw.ResponseWriter.WriteHeader(c) }

// Unwrap lets http.ResponseController reach the connection.
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

func (s *Server) bodyTimeout() time.Duration {
	if s.BodyTimeout > 0 {
		return s.BodyTimeout
	}
	return 30 * time.Second
}

// authorize applies Neutron's default policy by role: reading a project's
// resources needs reader (or member, or admin), changing them member (or
// admin); Neutrino's own agents hold service. With LegacyPolicy any role
// on the project will do, as before Neutron enforced its new defaults.
func (s *Server) authorize(c *policy.Caller, r *http.Request, collection string) error {
	if c.Admin || c.Service || s.LegacyPolicy {
		return nil
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if read && c.HasRoleFold("reader") || c.HasRoleFold("member") {
		return nil
	}
	action := "get"
	switch r.Method {
	case http.MethodPost:
		action = "create"
	case http.MethodPut:
		action = "update"
	case http.MethodDelete:
		action = "delete"
	}
	return fault.Forbidden("rule:%s_%s is disallowed by policy", action, strings.TrimSuffix(strings.ReplaceAll(collection, "-", "_"), "s"))
}

func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

var notFoundErr = &fault.Error{Status: http.StatusNotFound, Type: "HTTPNotFound", Message: "The resource could not be found."}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: 200}
	reqID := "req-" + uuid.NewString()
	w.Header().Set("X-Openstack-Request-Id", reqID)
	path := strings.TrimSuffix(r.URL.Path, ".json")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	collection := ""
	if len(parts) > 1 {
		collection = parts[1]
		if res, n := s.Reg.ByPath(parts[1:]); res != nil {
			collection = strings.Join(parts[1:1+n], "/")
		}
	}
	defer func() {
		if rec := recover(); rec != nil {
			s.Log.Error("panic", "err", rec, "path", r.URL.Path)
			s.writeError(sw, r, errors.New("panic"))
		}
		if res, _ := s.Reg.ByPath(strings.Split(collection, "/")); collection != "" && res == nil && collection != "extensions" && collection != "quotas" {
			collection = "other"
		}
		s.requests.WithLabelValues(r.Method, collection, strconv.Itoa(sw.code)).Inc()
		s.latency.WithLabelValues(r.Method, collection).Observe(time.Since(start).Seconds())
	}()
	if path == "/" || path == "" {
		writeJSON(sw, http.StatusOK, map[string]any{"versions": []any{map[string]any{"id": "v2.0", "status": "CURRENT",
			"links": []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/v2.0/"}}}}})
		return
	}
	if parts[0] != "v2.0" && parts[0] != "neutrino" {
		s.writeError(sw, r, notFoundErr)
		return
	}
	if r.ContentLength != 0 {
		// The body must arrive in time (answering needs none of it yet).
		http.NewResponseController(sw).SetReadDeadline(time.Now().Add(s.bodyTimeout()))
	}
	caller, err := s.Auth.Authenticate(r.Context(), r)
	if err != nil {
		s.unauthorized(sw, r)
		return
	}
	if parts[0] == "v2.0" && len(parts) > 1 && parts[1] != "extensions" {
		if err := s.authorize(caller, r, collection); err != nil {
			s.writeError(sw, r, err)
			return
		}
	}
	ctx := policy.With(r.Context(), caller)
	r = r.WithContext(ctx)
	if parts[0] == "neutrino" {
		s.internal(sw, r, caller, parts[1:])
		return
	}
	if len(parts) == 1 {
		if !strings.HasSuffix(r.URL.Path, "/") {
			s.writeError(sw, r, notFoundErr)
			return
		}
		s.resourcesIndex(sw, r)
		return
	}
	if parts[1] == "extensions" {
		s.extensions(sw, r, parts[2:])
		return
	}
	if res, n := s.Reg.ByPath(parts[1:]); res != nil {
		s.collection(sw, r, res, parts[1+n:])
		return
	}
	s.route(sw, r, caller, false, parts[1:])
}

// route serves a path a service registered (false if none matched).
func (s *Server) route(w http.ResponseWriter, r *http.Request, caller *policy.Caller, internal bool, parts []string) {
	endpoint, _ := r.Context().Value(dialectKey{}).(string)
	if endpoint == "octavia" {
		endpoint = ""
	}
	rt, args, wrongMethod := s.Reg.Match(r.Method, endpoint, internal, parts)
	if rt == nil {
		if wrongMethod {
			s.writeError(w, r, fault.MethodNotAllowed())
		} else {
			s.writeError(w, r, notFoundErr)
		}
		return
	}
	reply := http.Header{}
	status, body, err := rt.Serve(&plugin.Request{Request: r, Reg: s.Reg, Caller: caller, Args: args,
		Body: func() ([]byte, error) { return readBody(r) }, Reply: reply})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for k, v := range reply {
		w.Header()[k] = v
	}
	switch body := body.(type) {
	case nil:
		w.WriteHeader(status)
	case plugin.Raw:
		w.Header().Set("Content-Type", body.ContentType)
		w.WriteHeader(status)
		w.Write(body.Data)
	default:
		writeJSON(w, status, body)
	}
}

// extensions serves /v2.0/extensions[/<alias>]: what the enabled services
// registered.
func (s *Server) extensions(w http.ResponseWriter, r *http.Request, rest []string) {
	if r.Method != http.MethodGet {
		s.writeError(w, r, fault.MethodNotAllowed())
		return
	}
	render := func(e plugin.Extension) map[string]any {
		return map[string]any{"alias": e.Alias, "name": e.Name, "description": e.Description, "updated": e.Updated, "links": []any{}}
	}
	exts := s.Reg.Extensions()
	if len(rest) == 0 {
		out := make([]any, 0, len(exts))
		for _, e := range exts {
			out = append(out, render(e))
		}
		writeJSON(w, http.StatusOK, map[string]any{"extensions": out})
		return
	}
	for _, e := range exts {
		if e.Alias == rest[0] {
			writeJSON(w, http.StatusOK, map[string]any{"extension": render(e)})
			return
		}
	}
	s.writeError(w, r, fault.New(http.StatusNotFound, "HTTPNotFound", "Extension with alias %s does not exist", rest[0]))
}

func (s *Server) resourcesIndex(w http.ResponseWriter, r *http.Request) {
	var out []any
	for _, res := range []*schema.Resource{schema.Network, schema.Subnet, schema.SubnetPool, schema.Port} {
		if s.Reg.Handler(res) == nil {
			continue
		}
		out = append(out, map[string]any{"name": res.Member, "collection": res.Collection,
			"links": []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/v2.0/" + res.Collection}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"resources": out})
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fault.New(http.StatusRequestTimeout, "RequestTimeout", "The request body did not arrive in time.")
		}
		return nil, fault.BadRequest("Malformed request body")
	}
	if len(b) > maxBody {
		return nil, fault.New(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Request is too large.")
	}
	if !utf8.Valid(b) {
		return nil, fault.BadRequest("Malformed request body: %s", "it is not UTF-8")
	}
	return b, nil
}

// ifMatch parses If-Match: revision_number=N (-1 when absent).
func ifMatch(r *http.Request) (int64, error) {
	h := r.Header.Get("If-Match")
	if h == "" {
		return -1, nil
	}
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "revision_number="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, fault.BadRequest("Invalid value for If-Match header: %s", schema.Clip(h))
			}
			return n, nil
		}
	}
	return -1, nil
}

package keymanager

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/store"
)

// Secret types and the payload content types Barbican's stores take.
var (
	secretTypes  = []string{"symmetric", "public", "private", "passphrase", "certificate", "opaque"}
	contentTypes = []string{"text/plain", "application/octet-stream", "application/pkcs8", "application/pkix-cert"}
)

// ref is the URL of a secret or a container as the request reached us.
func ref(req *plugin.Request, collection, id string) string {
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + req.Host + "/v1/" + collection + "/" + id
}

// secretIn is what a secret is stored with.
type secretIn struct {
	Name            *string `json:"name"`
	Payload         *string `json:"payload"`
	ContentType     *string `json:"payload_content_type"`
	ContentEncoding *string `json:"payload_content_encoding"`
	SecretType      *string `json:"secret_type"`
	Algorithm       *string `json:"algorithm"`
	BitLength       *int    `json:"bit_length"`
	Mode            *string `json:"mode"`
	Expiration      *string `json:"expiration"`
}

// payloadTypes are the payload content types a secret is stored with.
var payloadTypes = []string{"text/plain", "text/plain;charset=utf-8", "text/plain; charset=utf-8", "application/octet-stream", "application/pkcs8"}

// decodePayload checks a payload against its content type and encoding
// and returns its bytes and the content type kept.
func decodePayload(payload, contentType, encoding string) ([]byte, string, error) {
	if !slices.Contains(payloadTypes, contentType) {
		return nil, "", schemaError("Secret", "payload_content_type", "payload_content_type is not one of %s", pyList(payloadTypes))
	}
	ct := contentType
	if strings.HasPrefix(ct, "text/plain") {
		if encoding != "" {
			return nil, "", schemaError("Secret", "payload_content_encoding", "payload_content_encoding is not one of None")
		}
		return []byte(payload), "text/plain", nil
	}
	switch encoding {
	case "base64":
	case "":
		return nil, "", schemaError("Secret", "payload_content_encoding", "payload_content_encoding is not one of ['base64', 'binary']")
	default:
		return nil, "", schemaError("Secret", "payload_content_encoding", "'%s' is not one of ['base64']", encoding)
	}
	b, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, "", schemaError("Secret", "payload", "Invalid payload for payload_content_encoding")
	}
	return b, ct, nil
}

// pyList renders strings as Python prints a list (Barbican's messages do).
func pyList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = "'" + s + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (s *Service) storeSecret(req *plugin.Request) (int, any, error) {
	var in secretIn
	if err := decode(req, &in); err != nil {
		return 0, nil, err
	}
	typ := "opaque"
	if in.SecretType != nil {
		typ = *in.SecretType
	}
	if !slices.Contains(secretTypes, typ) {
		return 0, nil, schemaError("Secret", "secret_type", "'%s' is not one of %s", typ, pyList(secretTypes))
	}
	var name any
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		if len(n) > 255 {
			return 0, nil, schemaError("Secret", "name", "'%s' is too long", n)
		}
		name = n
	}
	var expiration any
	if in.Expiration != nil && *in.Expiration != "" {
		t, err := parseTime(*in.Expiration)
		if err != nil {
			return 0, nil, schemaError("Secret", "expiration", "Invalid date for 'expiration'")
		}
		if t.Before(time.Now()) {
			return 0, nil, schemaError("Secret", "expiration", "'expiration' is before current time")
		}
		expiration = isoformat(t)
	}
	stamp := now()
	o := plugin.Object{"id": plugin.NewID(), "project_id": req.Caller.ProjectID, "creator_id": req.Caller.UserID,
		"name": name, "secret_type": typ, "algorithm": deref(in.Algorithm), "mode": deref(in.Mode),
		"bit_length": nil, "expiration": expiration, "status": "ACTIVE", "created": stamp, "updated": stamp}
	if in.BitLength != nil {
		if *in.BitLength < 1 || *in.BitLength > 32767 {
			return 0, nil, schemaError("Secret", "bit_length", "%d is not between 1 and 32767", *in.BitLength)
		}
		o["bit_length"] = float64(*in.BitLength)
	}
	switch {
	case in.Payload != nil && strings.TrimSpace(*in.Payload) == "":
		return 0, nil, schemaError("Secret", "payload", "If 'payload' specified, must be non empty")
	case in.Payload != nil:
		if in.ContentType == nil {
			return 0, nil, schemaError("Secret", "payload_content_type", "If 'payload' is supplied, 'payload_content_type' must also be supplied.")
		}
		data, ct, err := decodePayload(strings.TrimSpace(*in.Payload), *in.ContentType, strings.TrimSpace(deref2(in.ContentEncoding)))
		if err != nil {
			return 0, nil, err
		}
		o["content_type"], o["payload"] = ct, s.seal(attr.Str(o, "id"), data)
	case in.ContentType != nil:
		return 0, nil, schemaError("Secret", "payload", "payload must be provided when payload_content_type is specified")
	}
	if _, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error { return c.Tx.Put(secretKind, "", o) }); err != nil {
		return 0, nil, err
	}
	u := ref(req, "secrets", attr.Str(o, "id"))
	req.Reply.Set("Location", u)
	return http.StatusCreated, map[string]any{"secret_ref": u}, nil
}

func deref2(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// parseTime reads an ISO 8601 time, with or without a zone (none is UTC).
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badRequest("invalid time %q", v)
}

// presentSecret is a secret's metadata as Barbican shows it.
func presentSecret(req *plugin.Request, o plugin.Object) map[string]any {
	out := map[string]any{"secret_ref": ref(req, "secrets", attr.Str(o, "id"))}
	for _, k := range []string{"name", "secret_type", "algorithm", "bit_length", "mode", "expiration", "status", "created", "updated", "creator_id"} {
		out[k] = o[k]
	}
	if ct := attr.Str(o, "content_type"); ct != "" {
		out["content_types"] = map[string]any{"default": ct}
	}
	return out
}

// loadSecret reads a secret for an action of the caller ("Secret
// retrieval", "Secret deletion", ...): Barbican's 404 for an id that is
// not a UUID or names no (unexpired) secret, its 403 for one the caller
// may not read.
func loadSecret(c *plugin.Ctx, id, action string) (plugin.Object, error) {
	if !validID(id) {
		return nil, notFound("Not Found. Provided secret id is invalid.")
	}
	o, err := c.Tx.Get(secretKind, id)
	if err != nil || expired(o) {
		return nil, notFound("Secret not found.")
	}
	if !readable(c.Caller, o) {
		return nil, notAllowed(action)
	}
	return o, nil
}

// expired reports whether a secret's expiration has passed.
func expired(o plugin.Object) bool {
	t, err := parseTime(attr.Str(o, "expiration"))
	return err == nil && t.Before(time.Now())
}

func (s *Service) getSecret(req *plugin.Request) (int, any, error) {
	if accept := req.Header.Get("Accept"); accept != "" && !strings.Contains(accept, "json") && !strings.Contains(accept, "*/*") {
		return s.getPayload(req) // the payload, by content negotiation (Barbican's older way)
	}
	var out map[string]any
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadSecret(c, req.Args[0], "Secret retrieval")
		out = presentSecret(req, o)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

// getPayload answers a secret's payload in the type the client accepts:
// its bytes for application/octet-stream (and when no Accept is given),
// as UTF-8 text for text/plain (406 when they are not), echoing any other
// accepted type but JSON, as Barbican does.
func (s *Service) getPayload(req *plugin.Request) (int, any, error) {
	var o plugin.Object
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) (err error) {
		o, err = loadSecret(c, req.Args[0], "Secret payload retrieval")
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	sealed := attr.Str(o, "payload")
	if sealed == "" {
		return 0, nil, notFound("Not Found. Sorry but your secret has no payload.")
	}
	data, err := s.open(attr.Str(o, "id"), sealed)
	if err != nil {
		return 0, nil, err
	}
	accept := strings.TrimSpace(strings.Split(req.Header.Get("Accept"), ",")[0])
	wrong := fault.New(http.StatusNotAcceptable, "NotAcceptable", "Secret payload retrieval issue seen - Wrong payload content-type.")
	switch {
	case accept == "":
		accept = "application/octet-stream"
	case strings.HasPrefix(accept, "text/plain"):
		if !utf8.Valid(data) {
			return 0, nil, wrong
		}
		accept = "text/plain; charset=UTF-8"
	case strings.Contains(accept, "json"):
		return 0, nil, wrong
	}
	return http.StatusOK, plugin.Raw{ContentType: accept, Data: data}, nil
}

// putPayload adds the payload to a secret stored without one (the
// request's Content-Type and Content-Encoding describe it).
func (s *Service) putPayload(req *plugin.Request) (int, any, error) {
	body, err := req.Body()
	if err != nil {
		return 0, nil, err
	}
	if len(body) == 0 {
		return 0, nil, badRequest("No payload provided.")
	}
	data, ct, err := decodePayload(string(body), req.Header.Get("Content-Type"), req.Header.Get("Content-Encoding"))
	if err != nil {
		return 0, nil, err
	}
	_, err = req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadSecret(c, req.Args[0], "Secret update")
		if err != nil {
			return err
		}
		if !writable(c.Caller, o) {
			return notAllowed("Secret update")
		}
		if o["payload"] != nil {
			return conflict("Secret already has data, cannot modify it.")
		}
		o["content_type"], o["payload"], o["updated"] = ct, s.seal(attr.Str(o, "id"), data), now()
		return c.Tx.Put(secretKind, "", o)
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Service) deleteSecret(req *plugin.Request) (int, any, error) {
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadSecret(c, req.Args[0], "Secret deletion")
		if err != nil {
			return err
		}
		if !writable(c.Caller, o) {
			return notAllowed("Secret deletion")
		}
		if err := dropFromContainers(c, attr.Str(o, "id")); err != nil {
			return err
		}
		return c.Tx.Delete(secretKind, attr.Str(o, "id"))
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// page is a list page as Barbican answers it: limit (default 10, at most
// 100) items from offset, the total, and links to the pages beside it.
func page(req *plugin.Request, collection string, items []any) map[string]any {
	q := req.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil {
		limit = 10
	}
	limit = min(max(limit, 1), 100)
	offset, err := strconv.Atoi(q.Get("offset"))
	if err != nil || offset < 0 {
		offset = 0
	}
	out := map[string]any{"total": len(items)}
	end := min(offset+limit, len(items))
	if offset < len(items) {
		out[collection] = items[offset:end]
	} else {
		out[collection] = []any{}
	}
	link := func(off int) string {
		return ref(req, collection, "")[:len(ref(req, collection, ""))-1] + "?limit=" + strconv.Itoa(limit) + "&offset=" + strconv.Itoa(off)
	}
	if end < len(items) {
		out["next"] = link(end)
	}
	if offset > 0 {
		out["previous"] = link(max(offset-limit, 0))
	}
	return out
}

// listOwn lists the objects of kind in the caller's project (every one:
// what a project member may not read still shows), or with acl_only=true
// those whose ACL names the caller, by creation time, that match the
// query's name (and type, or secret_type).
func listOwn(req *plugin.Request, kind string) ([]plugin.Object, error) {
	var out []plugin.Object
	q := req.URL.Query()
	aclOnly := strings.EqualFold(q.Get("acl_only"), "true")
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		f := store.Filter{Projects: []string{c.Caller.ProjectID}}
		if aclOnly {
			f = store.Filter{}
		}
		all, err := c.Tx.List(kind, f)
		for _, o := range all {
			if kind == secretKind && expired(o) || aclOnly && !onACL(c.Caller.UserID, o) {
				continue
			}
			match := true
			for _, k := range []string{"name", "secret_type", "type", "mode"} {
				if q.Has(k) && attr.Str(o, k) != q.Get(k) {
					match = false
				}
			}
			if match {
				out = append(out, o)
			}
		}
		return err
	})
	slices.SortStableFunc(out, func(a, b plugin.Object) int { return strings.Compare(attr.Str(a, "created"), attr.Str(b, "created")) })
	return out, err
}

func (s *Service) listSecrets(req *plugin.Request) (int, any, error) {
	objs, err := listOwn(req, secretKind)
	if err != nil {
		return 0, nil, err
	}
	items := []any{}
	for _, o := range objs {
		items = append(items, presentSecret(req, o))
	}
	return http.StatusOK, page(req, "secrets", items), nil
}

package keymanager

import (
	"encoding/base64"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"neutrino/internal/attr"
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
	ContentType     string  `json:"payload_content_type"`
	ContentEncoding string  `json:"payload_content_encoding"`
	SecretType      string  `json:"secret_type"`
	Algorithm       *string `json:"algorithm"`
	BitLength       *int    `json:"bit_length"`
	Mode            *string `json:"mode"`
	Expiration      *string `json:"expiration"`
}

// decodePayload checks a payload against its content type and encoding
// and returns its bytes; normalized is the content type stored.
func decodePayload(payload, contentType, encoding string) (data []byte, normalized string, err error) {
	mt, params, perr := mime.ParseMediaType(contentType)
	if perr != nil || !slices.Contains(contentTypes, mt) {
		return nil, "", badRequest("Provided object does not match schema 'Secret': payload_content_type %s is not one of the supported content types (%s).", contentType, strings.Join(contentTypes, ", "))
	}
	normalized = mt
	if cs := params["charset"]; mt == "text/plain" && cs != "" {
		if !strings.EqualFold(cs, "utf-8") {
			return nil, "", badRequest("Provided object does not match schema 'Secret': charset %s is not supported (utf-8 is).", cs)
		}
		normalized = "text/plain;charset=utf-8"
	}
	switch {
	case mt == "text/plain" && encoding != "":
		return nil, "", badRequest("Provided object does not match schema 'Secret': payload_content_encoding is not allowed with a text/plain payload.")
	case mt != "text/plain" && encoding != "base64":
		return nil, "", badRequest("Provided object does not match schema 'Secret': payload_content_encoding must be base64 for %s payloads.", mt)
	case encoding == "base64":
		b, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			return nil, "", badRequest("Provided object does not match schema 'Secret': the payload is not valid base64.")
		}
		return b, normalized, nil
	}
	return []byte(payload), normalized, nil
}

func (s *Service) storeSecret(req *plugin.Request) (int, any, error) {
	var in secretIn
	if err := req.Decode(&in); err != nil {
		return 0, nil, err
	}
	if in.SecretType == "" {
		in.SecretType = "opaque"
	}
	if !slices.Contains(secretTypes, in.SecretType) {
		return 0, nil, badRequest("Provided object does not match schema 'Secret': %q is not one of %s", in.SecretType, strings.Join(secretTypes, ", "))
	}
	if in.Name != nil && len(*in.Name) > 255 {
		return 0, nil, badRequest("Provided object does not match schema 'Secret': name is longer than 255 characters.")
	}
	if in.Expiration != nil && *in.Expiration != "" {
		t, err := parseTime(*in.Expiration)
		if err != nil {
			return 0, nil, badRequest("Provided object does not match schema 'Secret': Invalid date for 'expiration'")
		}
		if t.Before(time.Now()) {
			return 0, nil, badRequest("Provided object does not match schema 'Secret': 'expiration' is before current time")
		}
	}
	o := plugin.Object{"id": plugin.NewID(), "project_id": req.Caller.ProjectID, "creator_id": req.Caller.UserID,
		"name": deref(in.Name), "secret_type": in.SecretType, "algorithm": deref(in.Algorithm), "mode": deref(in.Mode),
		"bit_length": nil, "expiration": deref(in.Expiration), "status": "ACTIVE", "created": now(), "updated": now()}
	if in.BitLength != nil {
		if *in.BitLength < 0 {
			return 0, nil, badRequest("Provided object does not match schema 'Secret': bit_length must be a positive integer.")
		}
		o["bit_length"] = float64(*in.BitLength)
	}
	switch {
	case in.Payload != nil && *in.Payload == "":
		return 0, nil, badRequest("Provided object does not match schema 'Secret': If 'payload' specified, must be non empty")
	case in.Payload != nil:
		if in.ContentType == "" {
			return 0, nil, badRequest("Provided object does not match schema 'Secret': If 'payload' is supplied, 'payload_content_type' must also be supplied.")
		}
		data, ct, err := decodePayload(*in.Payload, in.ContentType, in.ContentEncoding)
		if err != nil {
			return 0, nil, err
		}
		o["content_type"], o["payload"] = ct, s.seal(attr.Str(o, "id"), data)
	case in.ContentType != "":
		return 0, nil, badRequest("Provided object does not match schema 'Secret': If 'payload_content_type' is supplied, 'payload' must also be supplied.")
	}
	if _, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error { return c.Tx.Put(secretKind, "", o) }); err != nil {
		return 0, nil, err
	}
	u := ref(req, "secrets", attr.Str(o, "id"))
	req.Reply.Set("Location", u)
	return http.StatusCreated, map[string]any{"secret_ref": u}, nil
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

// loadSecret reads a secret the caller may read.
func loadSecret(c *plugin.Ctx, id string) (plugin.Object, error) {
	o, err := c.Tx.Get(secretKind, id)
	if err != nil || !readable(c.Caller, o) {
		return nil, notFound("secret")
	}
	return o, nil
}

func (s *Service) getSecret(req *plugin.Request) (int, any, error) {
	if accept := req.Header.Get("Accept"); accept != "" && !strings.Contains(accept, "json") && !strings.Contains(accept, "*/*") {
		return s.getPayload(req) // the payload, by content negotiation (Barbican's older way)
	}
	var out map[string]any
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadSecret(c, req.Args[0])
		out = presentSecret(req, o)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

func (s *Service) getPayload(req *plugin.Request) (int, any, error) {
	var o plugin.Object
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) (err error) {
		o, err = loadSecret(c, req.Args[0])
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	sealed := attr.Str(o, "payload")
	if sealed == "" {
		return 0, nil, notFound("secret payload")
	}
	data, err := s.open(attr.Str(o, "id"), sealed)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, plugin.Raw{ContentType: attr.Str(o, "content_type"), Data: data}, nil
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
	enc := req.Header.Get("Content-Encoding")
	data, ct, err := decodePayload(string(body), req.Header.Get("Content-Type"), enc)
	if err != nil {
		return 0, nil, err
	}
	_, err = req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadSecret(c, req.Args[0])
		if err != nil {
			return err
		}
		if !writable(c.Caller, o) {
			return forbidden()
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
		o, err := loadSecret(c, req.Args[0])
		if err != nil {
			return err
		}
		if !writable(c.Caller, o) {
			return forbidden()
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
	if err != nil || limit <= 0 {
		limit = 10
	}
	limit = min(limit, 100)
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

// listOwn lists the objects of kind in the caller's project (by creation
// time) that match the query's name (and, for secrets, secret_type).
func listOwn(req *plugin.Request, kind string) ([]plugin.Object, error) {
	var out []plugin.Object
	q := req.URL.Query()
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		all, err := c.Tx.List(kind, store.Filter{Projects: []string{c.Caller.ProjectID}})
		for _, o := range all {
			if !readable(c.Caller, o) || q.Has("name") && attr.Str(o, "name") != q.Get("name") ||
				q.Has("secret_type") && attr.Str(o, "secret_type") != q.Get("secret_type") {
				continue
			}
			out = append(out, o)
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

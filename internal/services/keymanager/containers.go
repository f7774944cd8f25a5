package keymanager

import (
	"net/http"
	"slices"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/plugin"
	"neutrino/internal/policy"
	"neutrino/internal/store"
)

// containerRules are the secret names a container type takes (a generic
// container takes any), with Barbican's messages.
var containerRules = map[string]struct {
	required, allowed []string
	missing, invalid  string
}{
	"certificate": {[]string{"certificate"}, []string{"certificate", "private_key", "private_key_passphrase", "intermediates"},
		"The minimum required reference name is 'certificate' for Certificate type",
		"only 'private_key', 'certificate' , 'private_key_passphrase',  or 'intermediates' reference names are allowed for Certificate type"},
	"rsa": {[]string{"public_key", "private_key"}, []string{"public_key", "private_key", "private_key_passphrase"},
		"The minimum required reference names are 'public_key' and'private_key' for RSA type",
		"only 'private_key', 'public_key' and 'private_key_passphrase' reference names are allowed for RSA type"},
	"generic": {},
}

// refID is the id at the end of a secret or container reference (a URL
// or a bare id).
func refID(ref string) string {
	ref = strings.TrimSuffix(ref, "/")
	return ref[strings.LastIndex(ref, "/")+1:]
}

func (s *Service) createContainer(req *plugin.Request) (int, any, error) {
	var in struct {
		Name       *string `json:"name"`
		Type       *string `json:"type"`
		SecretRefs []struct {
			Name *string `json:"name"`
			Ref  *string `json:"secret_ref"`
		} `json:"secret_refs"`
	}
	if err := decode(req, &in); err != nil {
		return 0, nil, err
	}
	if in.Type == nil {
		return 0, nil, schemaError("Container", "None", "'type' is a required property")
	}
	rules, ok := containerRules[*in.Type]
	if !ok {
		return 0, nil, schemaError("Container", "type", "'%s' is not one of ['generic', 'rsa', 'certificate']", *in.Type)
	}
	refs := []any{}
	names, ids := map[string]bool{}, map[string]bool{}
	base := ref(req, "secrets", "")
	for _, r := range in.SecretRefs {
		if r.Ref == nil {
			return 0, nil, schemaError("Container", "secret_refs", "'secret_ref' is a required property")
		}
		name := deref(r.Name)
		n, _ := name.(string)
		if *in.Type != "generic" && !slices.Contains(rules.allowed, n) {
			return 0, nil, schemaError("Container", "secret_refs", "%s", rules.invalid)
		}
		if names[n] {
			return 0, nil, schemaError("Container", "secret_refs", "Duplicate reference names are not allowed")
		}
		if ids[*r.Ref] {
			return 0, nil, schemaError("Container", "secret_refs", "Duplicate secret ids are not allowed")
		}
		if !strings.HasPrefix(*r.Ref, base) {
			return 0, nil, badRequest("Provided field value is not supported")
		}
		names[n], ids[*r.Ref] = true, true
		refs = append(refs, map[string]any{"name": name, "secret_id": refID(*r.Ref)})
	}
	for _, n := range rules.required {
		if !names[n] {
			return 0, nil, schemaError("Container", "secret_refs", "%s", rules.missing)
		}
	}
	stamp := now()
	o := plugin.Object{"id": plugin.NewID(), "project_id": req.Caller.ProjectID, "creator_id": req.Caller.UserID,
		"name": deref(in.Name), "type": *in.Type, "secret_refs": refs, "status": "ACTIVE", "created": stamp, "updated": stamp}
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		for _, r := range attr.Objects(o, "secret_refs") {
			if _, err := loadSecret(c, attr.Str(r, "secret_id"), "Secret retrieval"); err != nil {
				return notFound("Secret provided for '%s' doesn't exist.", attr.Str(r, "name"))
			}
		}
		return c.Tx.Put(containerKind, "", o)
	})
	if err != nil {
		return 0, nil, err
	}
	u := ref(req, "containers", attr.Str(o, "id"))
	req.Reply.Set("Location", u)
	return http.StatusCreated, map[string]any{"container_ref": u}, nil
}

// dropFromContainers takes a deleted secret out of every container that
// names it (Barbican does, silently).
func dropFromContainers(c *plugin.Ctx, secretID string) error {
	all, err := c.Tx.List(containerKind, store.Filter{})
	if err != nil {
		return err
	}
	for _, o := range all {
		refs := attr.List(o, "secret_refs")
		kept := slices.DeleteFunc(slices.Clone(refs), func(r any) bool {
			m, _ := r.(map[string]any)
			return attr.Str(m, "secret_id") == secretID
		})
		if len(kept) != len(refs) {
			o["secret_refs"] = kept
			if err := c.Tx.Put(containerKind, "", o); err != nil {
				return err
			}
		}
	}
	return nil
}

// presentContainer is a container as Barbican shows it.
func presentContainer(req *plugin.Request, o plugin.Object) map[string]any {
	out := map[string]any{"container_ref": ref(req, "containers", attr.Str(o, "id")), "consumers": []any{}}
	for _, k := range []string{"name", "type", "status", "created", "updated", "creator_id"} {
		out[k] = o[k]
	}
	refs := []any{}
	for _, r := range attr.Objects(o, "secret_refs") {
		refs = append(refs, map[string]any{"name": r["name"], "secret_ref": ref(req, "secrets", attr.Str(r, "secret_id"))})
	}
	out["secret_refs"] = refs
	return out
}

// loadContainer reads a container for an action of the caller, with
// Barbican's 404s and 403.
func loadContainer(c *plugin.Ctx, id, action string) (plugin.Object, error) {
	if !validID(id) {
		return nil, notFound("Not Found. Provided container id is invalid.")
	}
	o, err := c.Tx.Get(containerKind, id)
	if err != nil {
		return nil, notFound("Secrets container not found.")
	}
	if !readable(c.Caller, o) {
		return nil, notAllowed(action)
	}
	return o, nil
}

func (s *Service) getContainer(req *plugin.Request) (int, any, error) {
	var out map[string]any
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadContainer(c, req.Args[0], "Container retrieval")
		out = presentContainer(req, o)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

func (s *Service) listContainers(req *plugin.Request) (int, any, error) {
	objs, err := listOwn(req, containerKind)
	if err != nil {
		return 0, nil, err
	}
	items := []any{}
	for _, o := range objs {
		items = append(items, presentContainer(req, o))
	}
	return http.StatusOK, page(req, "containers", items), nil
}

func (s *Service) deleteContainer(req *plugin.Request) (int, any, error) {
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadContainer(c, req.Args[0], "Container deletion")
		if err != nil {
			return err
		}
		if !writable(c.Caller, o) {
			return notAllowed("Container deletion")
		}
		return c.Tx.Delete(containerKind, attr.Str(o, "id"))
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// onACL reports whether o's ACL names user.
func onACL(user string, o plugin.Object) bool {
	acl, _ := o["acl"].(map[string]any)
	read, _ := acl["read"].(map[string]any)
	return user != "" && slices.Contains(attr.List(read, "users"), any(user))
}

// serveACL serves a secret's or a container's ACL (its project's users
// only): GET shows it, PUT replaces it (an empty one: none), PATCH changes
// what it names, DELETE takes it away; a change is a change of the
// object.
func (s *Service) serveACL(collection string) func(req *plugin.Request) (int, any, error) {
	kind, what := secretKind, "Secret"
	if collection == "containers" {
		kind, what = containerKind, "Container"
	}
	return func(req *plugin.Request) (int, any, error) {
		var in struct {
			Read *struct {
				Users         *[]string `json:"users"`
				ProjectAccess *bool     `json:"project-access"`
			} `json:"read"`
		}
		if req.Method == "PUT" || req.Method == "PATCH" {
			if err := decode(req, &in); err != nil {
				return 0, nil, err
			}
		}
		var out any
		_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
			var o plugin.Object
			var err error
			if kind == secretKind {
				o, err = loadSecret(c, req.Args[0], what+" retrieval")
			} else {
				o, err = loadContainer(c, req.Args[0], what+" retrieval")
			}
			if err != nil {
				return err
			}
			if !writable(c.Caller, o) {
				return notAllowed(what + "ACL(s) retrieval")
			}
			acl, _ := o["acl"].(map[string]any)
			read, _ := acl["read"].(map[string]any)
			if req.Method == "GET" {
				out = presentACL(read)
				return nil
			}
			switch {
			case req.Method == "DELETE" || req.Method == "PUT" && (in.Read == nil || in.Read.Users == nil && in.Read.ProjectAccess == nil):
				delete(o, "acl")
			default:
				if req.Method == "PUT" || read == nil {
					read = map[string]any{"users": []any{}, "project-access": true, "created": now()}
				}
				if in.Read != nil && in.Read.Users != nil {
					users := []any{}
					for _, u := range *in.Read.Users {
						if !slices.Contains(users, any(u)) {
							users = append(users, u)
						}
					}
					read["users"] = users
				}
				if in.Read != nil && in.Read.ProjectAccess != nil {
					read["project-access"] = *in.Read.ProjectAccess
				}
				read["updated"] = now()
				o["acl"] = map[string]any{"read": read}
				out = map[string]any{"acl_ref": ref(req, collection, req.Args[0]) + "/acl"}
			}
			o["updated"] = now()
			return c.Tx.Put(kind, "", o)
		})
		if err != nil {
			return 0, nil, err
		}
		if out == nil {
			return http.StatusOK, plugin.Raw{ContentType: "application/json", Data: []byte("null")}, nil
		}
		return http.StatusOK, out, nil
	}
}

// presentACL is an ACL as Barbican shows it (none: project access).
func presentACL(read map[string]any) map[string]any {
	if read == nil {
		return map[string]any{"read": map[string]any{"project-access": true}}
	}
	return map[string]any{"read": map[string]any{"users": read["users"], "project-access": read["project-access"],
		"created": read["created"], "updated": read["updated"]}}
}

// readable reports whether caller may read o (a secret or a container):
// its project's users unless its ACL takes project access away (then its
// creator and project admins), and the users its ACL names.
func readable(caller *policy.Caller, o plugin.Object) bool {
	if caller.Service {
		return true
	}
	acl, _ := o["acl"].(map[string]any)
	read, _ := acl["read"].(map[string]any)
	if caller.ProjectID == attr.Str(o, "project_id") {
		if read == nil || read["project-access"] != false || caller.UserID == attr.Str(o, "creator_id") || caller.HasRoleFold("admin") {
			return true
		}
	}
	return onACL(caller.UserID, o)
}

package keymanager

import (
	"net/http"
	"slices"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/plugin"
)

// containerNames are the secret names each container type takes, the
// required ones first (a generic container takes any).
var containerNames = map[string]struct {
	required, allowed []string
}{
	"certificate": {[]string{"certificate"}, []string{"certificate", "private_key", "private_key_passphrase", "intermediates"}},
	"rsa":         {[]string{"public_key", "private_key"}, []string{"public_key", "private_key", "private_key_passphrase"}},
	"generic":     {},
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
		Type       string  `json:"type"`
		SecretRefs []struct {
			Name string `json:"name"`
			Ref  string `json:"secret_ref"`
		} `json:"secret_refs"`
	}
	if err := req.Decode(&in); err != nil {
		return 0, nil, err
	}
	names, ok := containerNames[in.Type]
	if !ok {
		return 0, nil, badRequest("Provided object does not match schema 'Container': %q is not one of generic, certificate, rsa", in.Type)
	}
	var refs []any
	seen := map[string]bool{}
	for _, r := range in.SecretRefs {
		if in.Type != "generic" && !slices.Contains(names.allowed, r.Name) {
			return 0, nil, badRequest("Provided object does not match schema 'Container': a %s container takes secrets named %s, not %q.", in.Type, strings.Join(names.allowed, ", "), r.Name)
		}
		if seen[r.Name] {
			return 0, nil, badRequest("Provided object does not match schema 'Container': Duplicate reference names are not allowed")
		}
		seen[r.Name] = true
		refs = append(refs, map[string]any{"name": r.Name, "secret_id": refID(r.Ref)})
	}
	for _, n := range names.required {
		if !seen[n] {
			return 0, nil, badRequest("Provided object does not match schema 'Container': a %s container needs a secret named %s.", in.Type, n)
		}
	}
	o := plugin.Object{"id": plugin.NewID(), "project_id": req.Caller.ProjectID, "creator_id": req.Caller.UserID,
		"name": deref(in.Name), "type": in.Type, "secret_refs": attr.OrEmpty(refs), "status": "ACTIVE", "created": now(), "updated": now()}
	_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
		for _, r := range refs {
			if _, err := loadSecret(c, attr.Str(r.(map[string]any), "secret_id")); err != nil {
				return notFound("secret")
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

// loadContainer reads a container the caller may read.
func loadContainer(c *plugin.Ctx, id string) (plugin.Object, error) {
	o, err := c.Tx.Get(containerKind, id)
	if err != nil || !readable(c.Caller, o) {
		return nil, notFound("container")
	}
	return o, nil
}

func (s *Service) getContainer(req *plugin.Request) (int, any, error) {
	var out map[string]any
	err := req.Reg.Read(req.Context(), func(c *plugin.Ctx) error {
		o, err := loadContainer(c, req.Args[0])
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
		o, err := loadContainer(c, req.Args[0])
		if err != nil {
			return err
		}
		if !writable(c.Caller, o) {
			return forbidden()
		}
		return c.Tx.Delete(containerKind, attr.Str(o, "id"))
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// serveACL serves a secret's or a container's ACL: GET shows it, PUT
// replaces it, PATCH changes what it names, DELETE takes it away (the
// project's users may read again, and only they).
func (s *Service) serveACL(collection string) func(req *plugin.Request) (int, any, error) {
	kind := map[string]string{"secrets": secretKind, "containers": containerKind}[collection]
	return func(req *plugin.Request) (int, any, error) {
		var in struct {
			Read *struct {
				Users         *[]string `json:"users"`
				ProjectAccess *bool     `json:"project-access"`
			} `json:"read"`
		}
		if req.Method == "PUT" || req.Method == "PATCH" {
			if err := req.Decode(&in); err != nil {
				return 0, nil, err
			}
		}
		var out any
		_, err := req.Reg.Write(req.Context(), func(c *plugin.Ctx) error {
			o, err := c.Tx.Get(kind, req.Args[0])
			if err != nil || !readable(c.Caller, o) {
				return notFound(strings.TrimSuffix(collection, "s"))
			}
			acl, _ := o["acl"].(map[string]any)
			read, _ := acl["read"].(map[string]any)
			if req.Method == "GET" {
				out = presentACL(read)
				return nil
			}
			if !writable(c.Caller, o) {
				return forbidden()
			}
			switch {
			case req.Method == "DELETE":
				delete(o, "acl")
			case req.Method == "PUT" || read == nil:
				read = map[string]any{"users": []any{}, "project-access": true, "created": now()}
				fallthrough
			default:
				if in.Read != nil && in.Read.Users != nil {
					users := []any{}
					for _, u := range *in.Read.Users {
						users = append(users, u)
					}
					read["users"] = users
				}
				if in.Read != nil && in.Read.ProjectAccess != nil {
					read["project-access"] = *in.Read.ProjectAccess
				}
				read["updated"] = now()
				o["acl"] = map[string]any{"read": read}
			}
			out = map[string]any{"acl_ref": ref(req, collection, req.Args[0]) + "/acl"}
			return c.Tx.Put(kind, "", o)
		})
		if err != nil {
			return 0, nil, err
		}
		if req.Method == "DELETE" {
			return http.StatusOK, nil, nil
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

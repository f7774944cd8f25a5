package core

import (
	"sort"

	"github.com/google/uuid"

	"neutrino/internal/schema"
	"neutrino/internal/store"
)

func isUnset(v any) bool      { return schema.IsUnset(v) }
func isUnique(err error) bool { return store.IsUniqueViolation(err) }
func sortStrings(s []string)  { sort.Strings(s) }
func newID() string           { return uuid.NewString() }

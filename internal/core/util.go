package core

import (
	"sort"

	"github.com/google/uuid"

	"neutrino/internal/schema"
)

func isUnset(v any) bool     { return schema.IsUnset(v) }
func sortStrings(s []string) { sort.Strings(s) }
func newID() string          { return uuid.NewString() }

package schema

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"neutrino/internal/fault"
)

// A Converter validates one attribute value from a request and returns its
// canonical form; it returns a *fault.Error describing bad input.
type Converter func(name string, v any) (any, error)

// Reason is a validation failure of one attribute; the API reports it as
// "Invalid input for <attr>. Reason: <reason>."
type Reason string

func (r Reason) Error() string { return string(r) }

func invalid(format string, args ...any) error { return Reason(fmt.Sprintf(format, args...)) }

// Bool accepts JSON booleans and the strings and numbers Neutron accepts.
func Bool(name string, v any) (any, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(x) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
	case float64:
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	}
	return nil, fault.InvalidInput("'%v' cannot be converted to boolean", render(v))
}

// Int accepts integers and integral strings.
func Int(name string, v any) (any, error) {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) {
			return x, nil
		}
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return float64(n), nil
		}
	}
	return nil, fault.InvalidInput("'%v' is not an integer", render(v))
}

// IntOrNull is Int that lets null through.
var IntOrNull = OrNull(Int)

// IntRange builds an integer converter bounded to [lo, hi].
func IntRange(lo, hi float64) Converter {
	return func(name string, v any) (any, error) {
		c, err := Int(name, v)
		if err != nil {
			return nil, err
		}
		n := c.(float64)
		if n < lo {
			return nil, invalid("'%v' is too small - must be at least '%v'", render(v), lo)
		}
		if n > hi {
			return nil, invalid("'%v' is too large - must be no larger than '%v'", render(v), hi)
		}
		return n, nil
	}
}

// OrNull lets null through c.
func OrNull(c Converter) Converter {
	return func(name string, v any) (any, error) {
		if v == nil {
			return nil, nil
		}
		return c(name, v)
	}
}

// String builds a string converter with a maximum length (0: unlimited).
func String(max int) Converter {
	return func(name string, v any) (any, error) {
		s, ok := v.(string)
		if !ok {
			return nil, invalid("'%s' is not a valid string", render(v))
		}
		if max > 0 && len(s) > max {
			return nil, invalid("'%s' exceeds maximum length of %d", Clip(s), max)
		}
		return s, nil
	}
}

// StringOrNull is a string converter that lets null through.
func StringOrNull(max int) Converter { return OrNull(String(max)) }

// OneOf accepts exactly the given strings.
func OneOf(values ...string) Converter {
	return func(name string, v any) (any, error) {
		s, ok := v.(string)
		if ok {
			for _, x := range values {
				if s == x {
					return s, nil
				}
			}
		}
		return nil, invalid("%s is not in valid_values", render(v))
	}
}

// OneOfOrNull is OneOf that lets null through.
func OneOfOrNull(values ...string) Converter { return OrNull(OneOf(values...)) }

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// IsUUID reports whether s looks like a UUID.
func IsUUID(s string) bool { return uuidRE.MatchString(s) }

// UUID accepts a UUID string.
func UUID(name string, v any) (any, error) {
	s, ok := v.(string)
	if !ok || !IsUUID(s) {
		return nil, invalid("'%s' is not a valid UUID", render(v))
	}
	return s, nil
}

// UUIDOrNull is UUID that lets null through.
var UUIDOrNull = OrNull(UUID)

// ProjectID accepts a project identifier (Keystone ids need not be UUIDs).
func ProjectID(name string, v any) (any, error) {
	s, ok := v.(string)
	if !ok || len(s) > 255 {
		return nil, invalid("'%s' is not a valid string", render(v))
	}
	return s, nil
}

// MAC accepts a unicast MAC address and returns it lower-case.
func MAC(name string, v any) (any, error) {
	s, ok := v.(string)
	if ok {
		if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 && hw[0]&1 == 0 && hw.String() != "00:00:00:00:00:00" {
			return hw.String(), nil
		}
	}
	return nil, invalid("'%s' is not a valid MAC address", render(v))
}

// IP accepts an IPv4 or IPv6 address in canonical form.
func IP(name string, v any) (any, error) {
	s, ok := v.(string)
	if ok {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			return a.Unmap().String(), nil
		}
	}
	return nil, invalid("'%s' is not a valid IP address", render(v))
}

// IPOrNull is IP that lets null through.
var IPOrNull = OrNull(IP)

// CIDR accepts a network prefix; host bits must be zero.
func CIDR(name string, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, invalid("'%s' is not a valid IP subnet", render(v))
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, err2 := netip.ParseAddr(s); err2 == nil {
			return nil, invalid("'%s' isn't a recognized IP subnet cidr, '%s' is recommended", s, netip.PrefixFrom(a, a.BitLen()).String())
		}
		return nil, invalid("'%s' is not a valid IP subnet", s)
	}
	if p.Masked() != p {
		return nil, invalid("'%s' isn't a recognized IP subnet cidr, '%s' is recommended", s, p.Masked().String())
	}
	return p.String(), nil
}

// PrefixOrNull accepts null or an IP prefix, kept as written (host bits
// and all, as Neutron keeps a metering rule's prefixes).
func PrefixOrNull(name string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, invalid("'%s' is not a valid IP subnet", render(v))
	}
	if _, err := netip.ParsePrefix(s); err != nil {
		return nil, invalid("'%s' is not a valid IP subnet", s)
	}
	return s, nil
}

// CIDRLoose accepts an address or prefix and normalizes it to the masked
// prefix (as security group rules and address pairs do).
func CIDRLoose(name string, v any) (any, error) {
	s, ok := v.(string)
	if ok {
		if p, err := netip.ParsePrefix(s); err == nil {
			return p.Masked().String(), nil
		}
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String(), nil
		}
	}
	return nil, invalid("'%s' is not a valid IP subnet", render(v))
}

// ListOf applies c to every element of a list.
func ListOf(c Converter) Converter {
	return func(name string, v any) (any, error) {
		l, ok := v.([]any)
		if !ok {
			return nil, invalid("'%s' is not a list", render(v))
		}
		out := make([]any, 0, len(l))
		for _, e := range l {
			x, err := c(name, e)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
}

// UniqueList is ListOf that also rejects duplicates.
func UniqueList(c Converter) Converter {
	lc := ListOf(c)
	return func(name string, v any) (any, error) {
		x, err := lc(name, v)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, e := range x.([]any) {
			k := render(e)
			if seen[k] {
				return nil, invalid("Duplicate items in the list: '%s'", k)
			}
			seen[k] = true
		}
		return x, nil
	}
}

// Dict accepts any JSON object.
func Dict(name string, v any) (any, error) {
	if _, ok := v.(map[string]any); !ok {
		return nil, invalid("'%s' is not a dictionary", render(v))
	}
	return v, nil
}

// NullAsEmpty turns null into an empty list before c (Neutron's
// convert_none_to_empty_list).
func NullAsEmpty(c Converter) Converter {
	return func(name string, v any) (any, error) {
		if v == nil {
			return []any{}, nil
		}
		return c(name, v)
	}
}

// DictOrNull accepts a JSON object or null.
var DictOrNull = OrNull(Dict)

// Anything accepts any value.
func Anything(name string, v any) (any, error) { return v, nil }

// render prints a request value the way Neutron's messages quote it.
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// Render is the canonical string form of a stored value, used to compare
// values with list filters.
func Render(v any) string { return render(v) }

// Clip shortens a value echoed in a message (a 4 MB name is not sent back
// whole).
func Clip(s string) string {
	const most = 64
	if len(s) <= most {
		return s
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Package jsonx encodes the JSON values Neutrino produces (maps, slices,
// strings, numbers, booleans, null, and ordered objects) without reflection.
package jsonx

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// KV is one member of an Ordered object.
type KV struct {
	K string
	V any
}

// Ordered is a JSON object whose members are encoded in the given order.
type Ordered []KV

// Get returns the value of member k.
func (o Ordered) Get(k string) (any, bool) {
	for _, kv := range o {
		if kv.K == k {
			return kv.V, true
		}
	}
	return nil, false
}

// Append encodes v onto b; map keys are sorted, as encoding/json sorts them.
// Other types fall back to encoding/json.
func Append(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.AppendInt(b, int64(x), 10), nil
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = Append(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case Raw:
		return append(b, x...), nil
	case Ordered:
		b = append(b, '{')
		for i, kv := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, kv.K)
			b = append(b, ':')
			var err error
			if b, err = Append(b, kv.V); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		return appendArray(b, len(x), func(i int) any { return x[i] })
	case []map[string]any:
		return appendArray(b, len(x), func(i int) any { return x[i] })
	case []string:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e)
		}
		return append(b, ']'), nil
	default:
		raw, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		return append(b, raw...), nil
	}
}

// Raw is already-encoded JSON.
type Raw []byte

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Copy deep-copies a JSON value (objects and arrays; other values are
// immutable and shared).
func Copy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = Copy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = Copy(e)
		}
		return l
	case []string:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = e
		}
		return l
	default:
		return v
	}
}

// appendArray encodes n elements given by at.
func appendArray(b []byte, n int, at func(int) any) ([]byte, error) {
	b = append(b, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = Append(b, at(i)); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

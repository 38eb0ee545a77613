package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// The helpers in this file give a struct "keep what you don't know" JSON semantics:
// keys that match a field's json tag exactly decode into that field, every other key
// is kept verbatim in an Extra map, and marshal writes the fields and then the extras.
// Matching is exact, unlike encoding/json's case-insensitive matching, so "Model" is
// an extra and not a second spelling of "model". Callers pass a local alias type
// without methods (type plain T) to avoid recursing into their own MarshalJSON.

// fieldIndex maps the JSON names of a struct type's tagged fields to field indexes.
type fieldIndex map[string]int

var fieldIndexes sync.Map // reflect.Type → fieldIndex

// fieldsOf returns the JSON field names of struct type t; fields tagged "-" are left out.
func fieldsOf(t reflect.Type) fieldIndex {
	if f, ok := fieldIndexes.Load(t); ok {
		return f.(fieldIndex)
	}
	f := fieldIndex{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" || name == "" {
			continue
		}
		f[name] = i
	}
	fieldIndexes.Store(t, f)
	return f
}

// decodeWithExtra decodes the JSON object data into the struct that v points to and
// returns the keys that match none of its fields. A JSON null leaves v unchanged and
// returns nil extras, as encoding/json does for Unmarshalers.
func decodeWithExtra(data []byte, v any) (map[string]json.RawMessage, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] != '{' && t[0] != 'n' {
		return nil, fmt.Errorf("want a JSON object, got %s", snippet(t))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, nil
	}
	rv := reflect.ValueOf(v).Elem()
	fields := fieldsOf(rv.Type())
	var extra map[string]json.RawMessage
	// Sorted so that, of several bad fields, the same one is reported every time.
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		raw := obj[key]
		i, ok := fields[key]
		if !ok {
			if extra == nil {
				extra = map[string]json.RawMessage{}
			}
			extra[key] = raw
			continue
		}
		if err := json.Unmarshal(raw, rv.Field(i).Addr().Interface()); err != nil {
			return nil, fmt.Errorf("field %q: %w", key, err)
		}
	}
	return extra, nil
}

// encodeWithExtra marshals the struct v and appends the extras whose keys are not
// among v's fields, sorted by key. A typed field always wins over an extra of the
// same name: decodeWithExtra never produces such an extra, so one can only come from
// code that set it by hand.
func encodeWithExtra(v any, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := marshalNoEscape(v)
	if err != nil {
		return nil, err
	}
	if len(extra) == 0 {
		return b, nil
	}
	fields := fieldsOf(reflect.TypeOf(v))
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // without the closing '}'
	empty := len(b) == 2    // "{}"
	for _, key := range slices.Sorted(maps.Keys(extra)) {
		if _, known := fields[key]; known {
			continue
		}
		if !empty {
			buf.WriteByte(',')
		}
		empty = false
		k, err := marshalNoEscape(key)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		raw := extra[key]
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("extra field %q: %w", key, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// marshalNoEscape is json.Marshal without HTML escaping, so that "<" in code or
// output reaches the upstream and the client as "<", not "\u003c".
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// snippet quotes the start of data for an error message.
func snippet(data []byte) string {
	const max = 120
	if len(data) > max {
		return fmt.Sprintf("%q…", data[:max])
	}
	return fmt.Sprintf("%q", data)
}

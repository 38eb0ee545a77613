// Package jsonerr says what is wrong with a JSON document in the document's terms, never
// in Go's: for every error a client or an operator gets about JSON they wrote.
package jsonerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Describe says what is wrong with a JSON document that failed to decode
// into v, in the document's terms: field names as they are spelled in JSON and JSON
// kinds ("timeout_ms: expected an integer, got a string"), never Go's type names.
func Describe(err error, v any) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		got := jsonValue(typeErr.Value)
		if typeErr.Field == "" {
			return fmt.Sprintf("expected %s, got %s", jsonKind(typeErr.Type), got)
		}
		if strings.HasPrefix(typeErr.Value, "number ") && isInteger(typeErr.Type) {
			return fmt.Sprintf("%s: expected an integer within %s, got %s", typeErr.Field, integerRange(typeErr.Type), got)
		}
		return fmt.Sprintf("%s: expected %s, got %s", typeErr.Field, jsonKind(typeErr.Type), got)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("not valid JSON: %s (at byte %d)", syntaxErr.Error(), syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON: it ends before its last value does"
	}
	msg := err.Error()
	// encoding/json has no type for this one: `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s; the fields are %s", name, jsonFields(reflect.TypeOf(v)))
	}
	return strings.TrimPrefix(msg, "json: ")
}

// jsonValue names what a document held, from UnmarshalTypeError.Value: "string",
// "number 1.5", "array", "object", "bool".
func jsonValue(v string) string {
	switch v {
	case "string", "number":
		return "a " + v
	case "array", "object":
		return "an " + v
	case "bool":
		return "a boolean"
	}
	return strings.TrimPrefix(v, "number ")
}

// jsonKind names the JSON a Go type takes.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case isInteger(t):
		return "an integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return "a base64 string"
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		return "an array"
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "an object"
	}
	return "another kind of value"
}

func isInteger(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func integerRange(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bits := t.Bits()
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr {
		return fmt.Sprintf("0..%d", uint64(1)<<bits-1)
	}
	return fmt.Sprintf("%d..%d", -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1)
}

// jsonFields lists the JSON fields of struct type t, and those of the structs
// within it: "code, files (path, content_base64)".
func jsonFields(t reflect.Type) string {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return "none"
	}
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		inner := f.Type
		for inner.Kind() == reflect.Pointer || inner.Kind() == reflect.Slice || inner.Kind() == reflect.Array {
			inner = inner.Elem()
		}
		if inner.Kind() == reflect.Struct && inner.NumField() > 0 && inner.PkgPath() != "time" {
			name += " (" + jsonFields(inner) + ")"
		}
		names = append(names, name)
	}
	return strings.Join(names, ", ")
}

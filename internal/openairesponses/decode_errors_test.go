package openairesponses

import (
	"strings"
	"testing"
)

// A body the decoder refuses is described in JSON's terms, never Go's.
func TestDecodeErrorsInJSONTerms(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"model": 5}`, `field "model": expected a string, got a number`},
		{`[1]`, `the body is not a JSON object: expected an object, got an array`},
	} {
		_, err := DecodeRequest([]byte(tc.body))
		if err == nil || err.Error() != tc.want || strings.Contains(err.Error(), "Go ") {
			t.Errorf("DecodeRequest(%s) = %v, want %q", tc.body, err, tc.want)
		}
	}
}

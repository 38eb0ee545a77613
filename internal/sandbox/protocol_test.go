package sandbox

import (
	"encoding/json"
	"testing"
)

// FuzzParseCtl feeds the decoder of zygote and child messages — bytes a compromised
// sandbox fully controls — anything at all: it must return a message or an error,
// and a message it accepts must survive a round trip.
func FuzzParseCtl(f *testing.F) {
	for _, s := range []string{
		`{"op": "ready"}`,
		`{"op": "exit", "id": 3, "status": 9}`,
		`{"op": "exit", "id": 3, "error": "fork: EAGAIN"}`,
		`{"op": "done", "exit_code": 1}`,
		`{"op": "exit", "id": 18446744073709551615, "status": -1}`,
		`{"op": "done", "exit_code": 1e400}`,
		`{"op": "exit", "status": null}`,
		`{"op":"spawn","seccomp":"!!","landlock":{"rules":[{"path":"/","access":-1}]}}`,
		`[]`, `"done"`, ``, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseCtl(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("an accepted message does not encode: %v", err)
		}
		if _, err := parseCtl(again); err != nil {
			t.Fatalf("an accepted message does not decode again: %v (%s)", err, again)
		}
	})
}

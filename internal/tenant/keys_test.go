package tenant

import (
	"strings"
	"testing"
)

func TestParseKeysFile(t *testing.T) {
	file := strings.Join([]string{
		"# keys of the test",
		"sk-old",
		"  sk-crlf  \r",
		"sk-a1 tenant=acme max_sessions=20 max_concurrent=4",
		"sk-a2\ttenant=acme   # a second key of acme",
		"sk-#hash # a '#' inside a key is part of it",
		"sk-capped max_concurrent=1",
		"",
	}, "\n")
	specs, err := ParseKeysFile("keys.txt", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := Resolve(specs)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		secret, tenant         string
		maxSessions, maxConcur int
	}{
		{"sk-old", "key#1", 0, 0},
		{"sk-crlf", "key#2", 0, 0},
		{"sk-a1", "acme", 20, 4},
		{"sk-a2", "acme", 20, 4},
		{"sk-#hash", "key#5", 0, 0},
		{"sk-capped", "key#6", 0, 1},
	}
	if len(keys) != len(want) {
		t.Fatalf("got %d keys, want %d: %+v", len(keys), len(want), keys)
	}
	for i, w := range want {
		k := keys[i]
		if k.Secret != w.secret || k.Tenant.Name != w.tenant || k.Tenant.MaxSessions != w.maxSessions || k.Tenant.MaxConcurrent != w.maxConcur {
			t.Errorf("key %d: got %q %+v, want %+v", i, k.Secret, *k.Tenant, w)
		}
	}
	if keys[2].Tenant != keys[3].Tenant {
		t.Error("the two keys of acme have two tenants; they must share one")
	}
	if specs[2].Where != "keys.txt:4" {
		t.Errorf("Where of the third key: %q, want keys.txt:4", specs[2].Where)
	}
}

// TestKeysFileErrors: every mistake is refused, names its line and what is valid,
// and never shows a key.
func TestKeysFileErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // substrings of the error
	}{
		{"# only comments\n\n", []string{"keys.txt holds no key"}},
		{"sk-secret1 tenant=acme max_session=3", []string{"keys.txt:1", `unknown option "max_session"`, "tenant, max_sessions, max_concurrent"}},
		{"sk-secret1 acme", []string{"keys.txt:1", `"acme" is not an option`}},
		{"sk-secret1 tenant=acme tenant=b", []string{"option tenant is given twice"}},
		{"sk-secret1 tenant=", []string{`"" is not a tenant name`}},
		{"sk-secret1 tenant=a/b", []string{`"a/b" is not a tenant name`}},
		{"sk-secret1 tenant=key#1", []string{`"key#1" is not a tenant name`}},
		{"sk-secret1 tenant=anonymous", []string{`"anonymous" is reserved`}},
		{"sk-secret1 max_sessions=0", []string{"max_sessions", `"0" is not a whole number from 1`}},
		{"sk-secret1 max_sessions=-2", []string{`"-2" is not a whole number`}},
		{"sk-secret1 max_concurrent=x", []string{"max_concurrent", `"x" is not a whole number`}},
		{"sk-secret1 max_concurrent=99999999999999999999", []string{"max_concurrent"}},
		{"sk-secret1\xff", []string{"keys.txt:1", "cannot be sent in an HTTP header"}},
		{"\n\nsk-secret1 x=1\nsk-secret2 y=2", []string{"keys.txt:3", "keys.txt:4"}}, // every bad line
	}
	for _, tt := range tests {
		_, err := ParseKeysFile("keys.txt", []byte(tt.file))
		if err == nil {
			t.Errorf("ParseKeysFile(%q): no error", tt.file)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseKeysFile(%q) = %q, want it to say %q", tt.file, err, w)
			}
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseKeysFile(%q) = %q: the error shows the key", tt.file, err)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"sk-secret1\nsk-secret1", []string{"keys.txt:2", "the same key as keys.txt:1"}},
		{"sk-secret1 tenant=acme max_sessions=3\nsk-secret2 tenant=acme max_sessions=4", []string{"keys.txt:2", `tenant "acme" has max_sessions=4`, "keys.txt:1 gave it 3"}},
		{"sk-secret1 tenant=acme max_concurrent=3\nsk-secret2 tenant=acme\nsk-secret3 tenant=acme max_concurrent=2", []string{"keys.txt:3", "max_concurrent"}},
	}
	for _, tt := range tests {
		specs, err := ParseKeysFile("keys.txt", []byte(tt.file))
		if err != nil {
			t.Fatalf("ParseKeysFile(%q): %v", tt.file, err)
		}
		_, err = Resolve(specs)
		if err == nil {
			t.Errorf("Resolve(%q): no error", tt.file)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Resolve(%q) = %q, want it to say %q", tt.file, err, w)
			}
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Resolve(%q) = %q: the error shows the key", tt.file, err)
		}
	}
	// A key of the file and the same key in the environment's list.
	file, _ := ParseKeysFile("keys.txt", []byte("sk-secret1"))
	env, _ := PlainKeys("CODEEXEC_API_KEYS", []string{"sk-other", "sk-secret1"})
	if _, err := Resolve(append(file, env...)); err == nil || !strings.Contains(err.Error(), "CODEEXEC_API_KEYS item 2: the same key as keys.txt:1") {
		t.Errorf("Resolve of a key in the file and the list: %v", err)
	}
	if _, err := PlainKeys("CODEEXEC_API_KEYS", []string{"sk\tsecret"}); err == nil {
		t.Error("PlainKeys accepted a key with a tab")
	}
}

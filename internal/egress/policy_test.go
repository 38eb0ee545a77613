package egress

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern string
		wantErr string // "" for valid
	}{
		{"example.com", ""},
		{"EXAMPLE.com", ""},
		{"example.com.", ""},
		{"*.example.com", ""},
		{"*.pypi.org", ""},
		{"a-b.c_d.example", ""},
		{"localhost", ""},
		{"xn--mnchen-3ya.de", ""},
		{"93.184.215.14", ""},
		{"2001:db8::1", ""},
		{"[2001:db8::1]", ""},
		{"::ffff:1.2.3.4", ""},
		{strings.Repeat("a", 63) + ".com", ""},
		{strings.Repeat("a.", 126) + "a", ""}, // 253 characters

		{"", "empty"},
		{"*", "every host"},
		{"*.", "every host"},
		{"**.example.com", `"*" may only be the whole first label`},
		{"foo.*.example.com", `"*" may only be the whole first label`},
		{"*example.com", `"*" may only be the whole first label`},
		{"*.*.example.com", `"*" may only be the whole first label`},
		{"https://example.com", "is a URL"},
		{"example.com/path", "is a URL"},
		{"10.0.0.0/8", "ranges are not supported"},
		{"2001:db8::/32", "ranges are not supported"},
		{"example.com:443", "has a port"},
		{"[2001:db8::1]:443", "has a port"},
		{"*.1.2.3.4", "cannot precede an IP address"},
		{"*.[::1]", "cannot precede an IP address"},
		{"[1.2.3.4]", "brackets must hold an IPv6 address"},
		{"[::1", "brackets"},
		{"fe80::1%eth0", "zones"},
		{"exa mple.com", `character ' ' not allowed`},
		{"exam!ple.com", `character '!' not allowed`},
		{"example.com\x00", `character '\x00' not allowed`},
		{"münchen.de", "not ASCII"},
		{"example..com", "empty label"},
		{".example.com", "empty label"},
		{"example.com..", "empty label"},
		{"-example.com", "starts or ends with '-'"},
		{"example-.com", "starts or ends with '-'"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat("a.", 127) + "a", "longer than 253"},
		{"127.1", "ends in a number"},
		{"0x7f.1", "ends in a number"},
		{"example.0x7f", "ends in a number"},
		{"1.2.3.4.5", "ends in a number"},
		{"010.0.0.1", "ends in a number"},
		{"4294967295", "ends in a number"},
	}
	for _, tt := range tests {
		err := ValidatePattern(tt.pattern)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidatePattern(%q) = %v, want nil", tt.pattern, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidatePattern(%q) = nil, want error containing %q", tt.pattern, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ValidatePattern(%q) = %q, want error containing %q", tt.pattern, err, tt.wantErr)
		case err != nil && !strings.HasPrefix(err.Error(), "allowlist entry "):
			t.Errorf("ValidatePattern(%q) = %q, want it to name the entry", tt.pattern, err)
		}
	}
}

func TestPatternMatches(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "EXAMPLE.COM.", true},
		{"Example.Com", "example.com", true},
		{"example.com", "www.example.com", false},
		{"example.com", "example.com.evil.test", false},
		{"example.com", "notexample.com", false},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{"*.example.com", "example.com.evil.test", false},
		{"93.184.215.14", "93.184.215.14", true},
		{"93.184.215.14", "::ffff:93.184.215.14", true},
		{"93.184.215.14", "93.184.215.15", false},
		{"2001:db8::1", "[2001:DB8:0::1]", true},
		{"2001:db8::1", "2001:db8::2", false},
		{"example.com", "93.184.215.14", false},
		{"*.example.com", "93.184.215.14", false},
	}
	for _, tt := range tests {
		p, err := parsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("parsePattern(%q): %v", tt.pattern, err)
		}
		h, err := parseHost(tt.host)
		if err != nil {
			t.Fatalf("parseHost(%q): %v", tt.host, err)
		}
		if got := p.matches(h); got != tt.want {
			t.Errorf("pattern %q matches host %q = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}

func TestCovered(t *testing.T) {
	tests := []struct {
		name                 string
		requested, permitted []string
		wantErr              string // "" for covered
	}{
		{"nothing requested", nil, nil, ""},
		{"exact", []string{"example.com"}, []string{"example.com"}, ""},
		{"case and dot", []string{"EXAMPLE.com."}, []string{"example.com"}, ""},
		{"subdomain of wildcard", []string{"x.a.com"}, []string{"*.a.com"}, ""},
		{"deep subdomain of wildcard", []string{"y.x.a.com"}, []string{"*.a.com"}, ""},
		{"narrower wildcard", []string{"*.x.a.com"}, []string{"*.a.com"}, ""},
		{"same wildcard", []string{"*.a.com"}, []string{"*.a.com"}, ""},
		{"several", []string{"pypi.org", "*.pythonhosted.org"}, []string{"*.pythonhosted.org", "pypi.org"}, ""},
		{"ip", []string{"203.0.113.7"}, []string{"203.0.113.7"}, ""},
		{"mapped ip", []string{"::ffff:203.0.113.7"}, []string{"203.0.113.7"}, ""},

		{"apex of wildcard", []string{"a.com"}, []string{"*.a.com"}, `"a.com"`},
		{"wildcard over exact", []string{"*.a.com"}, []string{"a.com"}, `"*.a.com"`},
		{"wider wildcard", []string{"*.a.com"}, []string{"*.x.a.com"}, `"*.a.com"`},
		{"suffix is not subdomain", []string{"xa.com"}, []string{"*.a.com"}, `"xa.com"`},
		{"wildcard suffix is not subdomain", []string{"*.xa.com"}, []string{"*.a.com"}, `"*.xa.com"`},
		{"other host", []string{"evil.com"}, []string{"example.com"}, `"evil.com"`},
		{"nothing permitted", []string{"example.com"}, nil, `"example.com"`},
		{"first uncovered named", []string{"example.com", "b.test", "c.test"}, []string{"example.com"}, `"b.test"`},
		{"ip not covered by wildcard", []string{"203.0.113.7"}, []string{"*.a.com"}, `"203.0.113.7"`},
		{"name not covered by ip", []string{"a.com"}, []string{"203.0.113.7"}, `"a.com"`},
		{"malformed requested", []string{"a..com"}, []string{"*.com"}, "empty label"},
		{"malformed permitted", []string{"a.com"}, []string{"*"}, "permitted allowlist entry"},
	}
	for _, tt := range tests {
		err := Covered(tt.requested, tt.permitted)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: Covered(%q, %q) = %v, want nil", tt.name, tt.requested, tt.permitted, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("%s: Covered(%q, %q) = nil, want error containing %q", tt.name, tt.requested, tt.permitted, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("%s: Covered(%q, %q) = %q, want error containing %q", tt.name, tt.requested, tt.permitted, err, tt.wantErr)
		}
	}
	if err := Covered([]string{"evil.com"}, []string{"example.com"}); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("Covered(evil.com, example.com) = %v, want it to wrap ErrNotPermitted", err)
	}
	if err := Covered([]string{"a..com"}, []string{"*.com"}); errors.Is(err, ErrNotPermitted) {
		t.Errorf("Covered(a..com, *.com) = %v, want a syntax error, not ErrNotPermitted", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		wantErr string
	}{
		{"zero", Policy{}, ""},
		{"full", Policy{Allow: []string{"a.test"}, Ports: []int{443}, MaxConns: 1, MaxTotalConns: 1, MaxBytes: 1, DialTimeout: 1, IdleTimeout: 1}, ""},
		{"bad pattern", Policy{Allow: []string{"a.test", "*"}}, "Policy.Allow[1]"},
		{"port zero", Policy{Ports: []int{0}}, "Policy.Ports[0]"},
		{"port too big", Policy{Ports: []int{443, 65536}}, "Policy.Ports[1]"},
		{"negative MaxConns", Policy{MaxConns: -1}, "Policy.MaxConns"},
		{"negative MaxTotalConns", Policy{MaxTotalConns: -1}, "Policy.MaxTotalConns"},
		{"negative MaxBytes", Policy{MaxBytes: -1}, "Policy.MaxBytes"},
		{"negative DialTimeout", Policy{DialTimeout: -1}, "Policy.DialTimeout"},
		{"negative IdleTimeout", Policy{IdleTimeout: -1}, "Policy.IdleTimeout"},
	}
	for _, tt := range tests {
		err := tt.policy.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
		if _, nerr := New(tt.policy, Options{}); (nerr == nil) != (err == nil) {
			t.Errorf("%s: New error %v disagrees with Validate error %v", tt.name, nerr, err)
		}
	}
}

// TestPolicyFieldsHandled fails when Policy gains a field: Validate, withDefaults
// and the proxy must learn it first.
func TestPolicyFieldsHandled(t *testing.T) {
	const handled = 7
	if n := reflect.TypeFor[Policy]().NumField(); n != handled {
		t.Errorf("Policy has %d fields, Validate and withDefaults handle %d: update them, then this test", n, handled)
	}
	d := Policy{}.withDefaults()
	v := reflect.ValueOf(d)
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Name != "Allow" && v.Field(i).IsZero() {
			t.Errorf("Policy{}.withDefaults().%s is zero, want a default", f.Name)
		}
	}
}

func FuzzValidatePattern(f *testing.F) {
	for _, s := range []string{
		"example.com", "*.example.com", "EXAMPLE.COM.", "1.2.3.4", "[::1]", "::ffff:1.2.3.4",
		"fe80::1%eth0", "127.1", "0x7f.1", "*.", "a..b", "münchen.de", "a_b.c-d", "x:80", "*.*.a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePattern(s)
		if err != nil {
			if !utf8.ValidString(err.Error()) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("parsePattern(%q) error %q is not one printable line", s, err)
			}
			return
		}
		// The normal form parses to itself and is covered by the pattern.
		q, err := parsePattern(p.String())
		if err != nil || q != p {
			t.Fatalf("parsePattern(%q) = %v; reparsing %q = %v, %v", s, p, p.String(), q, err)
		}
		if err := Covered([]string{s}, []string{p.String()}); err != nil {
			t.Errorf("Covered(%q, %q) = %v, want nil", s, p.String(), err)
		}
		if p.ip.IsValid() {
			if p.wildcard || p.ip.Is4In6() || p.ip.Zone() != "" {
				t.Errorf("parsePattern(%q) = %+v, want a plain unmapped address", s, p)
			}
			return
		}
		if strings.Trim(p.name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" || strings.HasSuffix(p.name, ".") {
			t.Errorf("parsePattern(%q) name %q is not normalized", s, p.name)
		}
		h, err := parseHost(p.name)
		if err != nil {
			t.Fatalf("parseHost(%q) = %v after parsePattern accepted it", p.name, err)
		}
		if p.matches(h) == p.wildcard {
			t.Errorf("pattern %q matches its own base %q = %v", s, p.name, !p.wildcard)
		}
		if p.wildcard && !p.matches(host{name: "x." + p.name}) {
			t.Errorf("pattern %q does not match %q", s, "x."+p.name)
		}
	})
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"allowed.test:443", "ALLOWED.test.:80", "x.wild.test:443", "wild.test:443", "[::1]:443",
		"203.0.113.7:443", "[::ffff:203.0.113.7]:80", "allowed.test", "allowed.test:", ":443",
		"allowed.test:+443", "allowed.test:0443", "a:b:c", "[::1", "evil.test:443",
	} {
		f.Add(s)
	}
	p, err := New(Policy{Allow: []string{"allowed.test", "*.wild.test", "203.0.113.7"}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, def := range []int{0, 80} {
			tg, d := p.check(s, def)
			if d != nil {
				if reasonPhrase(d.Error()) != d.Error() && len(d.Error()) <= 1024 {
					t.Errorf("check(%q) message %q is not safe in a status line", s, d.Error())
				}
				continue
			}
			if tg.port != 80 && tg.port != 443 {
				t.Errorf("check(%q, %d) allowed port %d", s, def, tg.port)
			}
			switch {
			case tg.host.ip.IsValid():
				if tg.host.ip.String() != "203.0.113.7" {
					t.Errorf("check(%q, %d) allowed address %s", s, def, tg.host.ip)
				}
			case tg.host.name != "allowed.test" && !strings.HasSuffix(tg.host.name, ".wild.test"):
				t.Errorf("check(%q, %d) allowed host %q", s, def, tg.host.name)
			}
		}
	})
}

package tenant

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Key is an API key and the tenant it authenticates.
type Key struct {
	Secret string
	Tenant *Tenant
}

// KeySpec is one key as configured: its secret and the options given with it.
// Messages about it name Where, never the secret.
type KeySpec struct {
	Where         string // "keys.txt:3": where the key was configured
	Secret        string
	Tenant        string // "": a tenant of the key's own
	MaxSessions   int    // 0: not given
	MaxConcurrent int    // 0: not given
}

// options are the NAME=VALUE fields a key's line may carry.
var options = []string{"tenant", "max_sessions", "max_concurrent"}

// maxCap bounds a cap in a keys file: far above any real server, low enough that
// counting cannot overflow.
const maxCap = 1_000_000

var tenantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseKeysFile reads a keys file named name. Each line holds a key, optionally
// followed by options, separated by blanks; '#' starts a comment:
//
//	sk-one                                   # a tenant of its own
//	sk-two tenant=acme max_sessions=20 max_concurrent=4
//	sk-three tenant=acme                     # a second key of acme
//
// A line of only a key is the format of old: it stays valid.
func ParseKeysFile(name string, data []byte) ([]KeySpec, error) {
	var specs []KeySpec
	var errs []error
	for i, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(stripComment(line))
		if len(fields) == 0 {
			continue
		}
		spec, err := parseKeyLine(fmt.Sprintf("%s:%d", name, i+1), fields)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, spec)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%s holds no key", name)
	}
	return specs, nil
}

// stripComment cuts line at a '#' that begins a field: a key may hold '#' elsewhere.
func stripComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || isBlank(line[i-1])) {
			return line[:i]
		}
	}
	return line
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

func parseKeyLine(where string, fields []string) (KeySpec, error) {
	spec := KeySpec{Where: where, Secret: fields[0]}
	if err := checkSecret(spec.Secret); err != nil {
		return spec, fmt.Errorf("%s: %w", where, err)
	}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return spec, fmt.Errorf("%s: %q is not an option (NAME=VALUE): a line is a key, then options among %s", where, f, strings.Join(options, ", "))
		}
		if seen[name] {
			return spec, fmt.Errorf("%s: option %s is given twice", where, name)
		}
		seen[name] = true
		var err error
		switch name {
		case "tenant":
			spec.Tenant, err = checkTenantName(value)
		case "max_sessions":
			spec.MaxSessions, err = parseCap(value)
		case "max_concurrent":
			spec.MaxConcurrent, err = parseCap(value)
		default:
			err = fmt.Errorf("unknown option %q; the options are %s", name, strings.Join(options, ", "))
		}
		if err != nil {
			return spec, fmt.Errorf("%s: %s: %w", where, name, err)
		}
	}
	return spec, nil
}

// checkSecret refuses keys no client could send in an Authorization header.
func checkSecret(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("the key has a byte (0x%02x at %d) that cannot be sent in an HTTP header; use printable ASCII", s[i], i)
		}
	}
	return nil
}

func checkTenantName(s string) (string, error) {
	if !tenantName.MatchString(s) {
		return "", fmt.Errorf("%q is not a tenant name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	if s == AnonymousName {
		return "", fmt.Errorf("%q is reserved for the caller of a server without keys", s)
	}
	return s, nil
}

func parseCap(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxCap {
		return 0, fmt.Errorf("%q is not a whole number from 1 to %d", s, maxCap)
	}
	return n, nil
}

// PlainKeys makes specs of keys given without options (a comma-separated list in
// an environment variable, say); where names the list.
func PlainKeys(where string, secrets []string) ([]KeySpec, error) {
	var specs []KeySpec
	for i, s := range secrets {
		w := fmt.Sprintf("%s item %d", where, i+1)
		if err := checkSecret(s); err != nil {
			return nil, fmt.Errorf("%s: %w", w, err)
		}
		specs = append(specs, KeySpec{Where: w, Secret: s})
	}
	return specs, nil
}

// Resolve gives every key its tenant. Keys naming the same tenant share it; a key
// naming none is a tenant of its own, named "key#N" after its place in specs (no
// configured name can hold '#'). A tenant's caps may be given with any of its keys,
// but must not disagree. The same key twice is an error: it could not say whose it is.
func Resolve(specs []KeySpec) ([]Key, error) {
	tenants := map[string]*Tenant{}
	capWhere := map[string]string{} // "tenant/option" -> where it was set
	bySecret := map[string]string{}
	keys := make([]Key, 0, len(specs))
	for i, s := range specs {
		if s.Secret == "" {
			return nil, fmt.Errorf("%s: empty key", s.Where)
		}
		if prev, dup := bySecret[s.Secret]; dup {
			return nil, fmt.Errorf("%s: the same key as %s", s.Where, prev)
		}
		bySecret[s.Secret] = s.Where
		name := s.Tenant
		if name == "" {
			name = "key#" + strconv.Itoa(i+1)
		}
		t := tenants[name]
		if t == nil {
			t = &Tenant{Name: name}
			tenants[name] = t
		}
		for _, c := range []struct {
			option string
			have   *int
			want   int
		}{{"max_sessions", &t.MaxSessions, s.MaxSessions}, {"max_concurrent", &t.MaxConcurrent, s.MaxConcurrent}} {
			if c.want == 0 {
				continue
			}
			if *c.have != 0 && *c.have != c.want {
				return nil, fmt.Errorf("%s: tenant %q has %s=%d, but %s gave it %d", s.Where, name, c.option, c.want, capWhere[name+"/"+c.option], *c.have)
			}
			*c.have = c.want
			capWhere[name+"/"+c.option] = s.Where
		}
		keys = append(keys, Key{Secret: s.Secret, Tenant: t})
	}
	return keys, nil
}

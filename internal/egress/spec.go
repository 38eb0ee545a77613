package egress

import (
	"fmt"
	"strings"
)

// ParseSpec reads a network setting as the CLI and the API write it: "none" (or "")
// for no network, or "allow=HOST[,HOST…]" for the hosts the egress proxy may reach.
// It returns the policy that allows those hosts (with the default caps), nil for none.
func ParseSpec(s string) (*Policy, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	list, ok := strings.CutPrefix(s, "allow=")
	if !ok {
		return nil, fmt.Errorf("network %q: want \"none\" or \"allow=HOST[,HOST…]\"", s)
	}
	var hosts []string
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if err := ValidatePattern(h); err != nil {
			return nil, fmt.Errorf("network %q: %w", s, err)
		}
		hosts = append(hosts, h)
	}
	return &Policy{Allow: hosts}, nil
}

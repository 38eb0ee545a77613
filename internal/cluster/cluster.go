// Package cluster makes the replicas of one deployment act as one server: each
// stateful resource's id names the replica that holds it, and a replica forwards a
// request for another's resource to that owner.
//
// A session, an E2B sandbox or an MCP session is a process tree (or a table entry)
// on one machine: it cannot move, so the request must. Ids carry their owner, as
// "<kind>_<replica>_<random>", so that any replica can route without a shared
// store, and a resource whose owner has gone is answered at once (session_lost)
// rather than looked up somewhere. The rejected alternative, a table of ids shared
// between replicas, would be a database to run and to keep consistent with process
// trees that die with their pod.
package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Peer is one replica of the deployment and where its listeners are.
type Peer struct {
	// Name is the replica's name (its pod's name in a StatefulSet), as ids carry it.
	Name string
	// API is the base URL of its HTTP API (serve's addr).
	API *url.URL
	// E2B is the base URL of its E2B listener (serve's e2b_addr); nil: none.
	E2B *url.URL
}

// ValidName reports whether name can be a replica's name: a DNS label (what a pod's
// name is), so that it cannot hold the "_" that separates the parts of an id.
func ValidName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("replica name %q: want 1 to 63 characters", name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(name)-1
		if !ok {
			return fmt.Errorf("replica name %q is not a DNS label (lowercase letters, digits and inner '-')", name)
		}
	}
	return nil
}

// ID returns the id of a resource of kind (sess, resp, mcp) made by replica, with
// random its unguessable part; without a replica (no cluster) it is
// "<kind>_<random>", the ids of a lone server.
func ID(kind, replica, random string) string {
	if replica == "" {
		return kind + "_" + random
	}
	return kind + "_" + replica + "_" + random
}

// Owner returns the replica that id names, or "" for an id that names none (the
// ids of a lone server, or not an id of ours at all).
func Owner(id string) string {
	parts := strings.SplitN(id, "_", 3)
	if len(parts) != 3 || parts[2] == "" || ValidName(parts[1]) != nil {
		return ""
	}
	return parts[1]
}

// ParsePeers reads peers given as "NAME=URL" items (serve's peers key), each URL
// the replica's API. Its E2B listener, when e2bPort is set, is taken to be on the
// same host at e2bPort: the replicas of a deployment share one configuration.
func ParsePeers(items []string, e2bPort string) ([]Peer, error) {
	var peers []Peer
	for _, it := range items {
		name, raw, ok := strings.Cut(strings.TrimSpace(it), "=")
		if !ok {
			return nil, fmt.Errorf("peer %q: want NAME=URL, such as codeexec-0=http://codeexec-0.codeexec-headless:8080", it)
		}
		p, err := newPeer(name, raw, "")
		if err != nil {
			return nil, err
		}
		if e2bPort != "" {
			e := *p.API
			e.Host = net.JoinHostPort(p.API.Hostname(), e2bPort)
			p.E2B = &e
		}
		peers = append(peers, p)
	}
	return peers, checkUnique(peers)
}

// ParsePeersFile reads a peers file: a replica a line, "NAME API_URL [E2B_URL]",
// blank lines and "#" comments ignored. It is what the list of a headless Service
// gives, one line per pod, with room for listeners on ports of their own (several
// replicas on one host).
func ParsePeersFile(name string, data []byte) ([]Peer, error) {
	var peers []Peer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) > 3 || len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: want NAME API_URL [E2B_URL], got %q", name, n, strings.TrimSpace(line))
		}
		e2b := ""
		if len(f) == 3 {
			e2b = f[2]
		}
		p, err := newPeer(f[0], f[1], e2b)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		peers = append(peers, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if err := checkUnique(peers); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return peers, nil
}

func newPeer(name, api, e2b string) (Peer, error) {
	if err := ValidName(name); err != nil {
		return Peer{}, fmt.Errorf("peer: %w", err)
	}
	p := Peer{Name: name}
	var err error
	if p.API, err = baseURL(api); err != nil {
		return Peer{}, fmt.Errorf("peer %s: %w", name, err)
	}
	if e2b != "" {
		if p.E2B, err = baseURL(e2b); err != nil {
			return Peer{}, fmt.Errorf("peer %s (e2b): %w", name, err)
		}
	}
	return p, nil
}

// baseURL parses an http(s) URL with a host and nothing after its path.
func baseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q is not a base URL such as http://codeexec-0.codeexec-headless:8080", raw)
	}
	return u, nil
}

func checkUnique(peers []Peer) error {
	var seen []string
	for _, p := range peers {
		if slices.Contains(seen, p.Name) {
			return fmt.Errorf("peer %q is listed twice", p.Name)
		}
		seen = append(seen, p.Name)
	}
	return nil
}

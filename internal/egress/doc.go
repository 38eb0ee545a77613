// Package egress is the HTTP proxy through which a sandbox with limited network
// reaches the internet. The sandbox's network namespace has only loopback; the server
// opens a listener on 127.0.0.1 inside it and a Proxy serves that listener from
// the host, forwarding CONNECT tunnels and plain-HTTP requests only to the hosts and
// ports on the execution's allowlist. It stops code in the sandbox from borrowing the
// host's network position: reaching hosts not on the list, the host's own services,
// the cloud metadata endpoint or the private network (every resolved address must be
// public, and the proxy dials the address it checked, never the name again, so DNS
// rebinding cannot swap in a private one), and from using more connections or bytes
// than the policy grants.
package egress

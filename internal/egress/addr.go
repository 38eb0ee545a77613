package egress

import "net/netip"

// nonPublic4 are the IPv4 ranges that are not the public internet (IANA's special-
// purpose registry, RFC 6890 and successors). 6to4 and NAT64 addresses embed IPv4
// addresses and are checked against this list too.
var nonPublic4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network" (RFC 791)
	netip.MustParsePrefix("10.0.0.0/8"),      // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, and cloud metadata 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),   // private (RFC 1918)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (RFC 5737)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (RFC 7526)
	netip.MustParsePrefix("192.168.0.0/16"),  // private (RFC 1918)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking (RFC 2544)
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (RFC 5737)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (RFC 5737)
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast 255.255.255.255
}

var (
	// global6 is IPv6 global unicast. Everything outside it is not public:
	// unspecified, loopback, IPv4-compatible, discard (100::/64), ULA (fc00::/7),
	// link-local, site-local, multicast, SRv6 (5f00::/16). The two NAT64 prefixes
	// below are the only addresses outside it that are handled apart.
	global6 = netip.MustParsePrefix("2000::/3")

	// nonPublic6 are the non-public ranges inside global6.
	nonPublic6 = []netip.Prefix{
		netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments: Teredo, benchmarking, ORCHID (RFC 2928)
		netip.MustParsePrefix("2001:db8::/32"), // documentation (RFC 3849)
		netip.MustParsePrefix("3fff::/20"),     // documentation (RFC 9637)
	}

	nat64      = netip.MustParsePrefix("64:ff9b::/96")   // well-known NAT64 (RFC 6052): IPv4 in the last 32 bits
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48") // local-use NAT64 (RFC 8215): a private translator
	sixToFour  = netip.MustParsePrefix("2002::/16")      // 6to4 (RFC 3056): IPv4 in bits 16 to 47
)

// PublicAddr reports whether a is a public internet address: not loopback, private,
// link-local, multicast, unspecified, carrier-grade NAT, documentation, benchmarking
// or reserved, and not an IPv4-mapped, NAT64 or 6to4 form of such an address. It is
// the default Options.AddrAllowed. Addresses with an IPv6 zone are never public.
func PublicAddr(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	if a.Is4() {
		for _, p := range nonPublic4 {
			if p.Contains(a) {
				return false
			}
		}
		return true
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return PublicAddr(netip.AddrFrom4([4]byte(b[12:16])))
	case nat64Local.Contains(a), !global6.Contains(a):
		return false
	case sixToFour.Contains(a):
		return PublicAddr(netip.AddrFrom4([4]byte(b[2:6])))
	}
	for _, p := range nonPublic6 {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

package egress

import (
	"net/netip"
	"testing"
)

func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		// Public.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.215.14", true},
		{"100.63.255.255", true},  // just below CGNAT
		{"100.128.0.0", true},     // just above CGNAT
		{"172.15.255.255", true},  // just below 172.16/12
		{"172.32.0.0", true},      // just above 172.16/12
		{"198.17.255.255", true},  // just below benchmarking
		{"198.20.0.0", true},      // just above benchmarking
		{"223.255.255.255", true}, // just below multicast
		{"::ffff:8.8.8.8", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:800::200e", true},
		{"64:ff9b::808:808", true},     // NAT64 of 8.8.8.8
		{"2002:808:808::1", true},      // 6to4 of 8.8.8.8
		{"2001:200::1", true},          // just above 2001::/23
		{"3ffe:ffff::1", true},         // below 3fff::/20
		{"2001:4860:4860::8888", true}, // outside 2001:db8::/32

		// IPv4 special ranges.
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"169.254.169.254", false}, // cloud metadata
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.0.0.170", false}, // NAT64 discovery
		{"192.0.2.1", false},
		{"192.88.99.1", false},
		{"192.168.1.1", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},
		{"198.51.100.7", false},
		{"203.0.113.7", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},

		// IPv4-mapped forms.
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},

		// IPv6 special ranges.
		{"::", false},
		{"::1", false},
		{"::127.0.0.1", false}, // IPv4-compatible, deprecated
		{"::8.8.8.8", false},
		{"100::1", false}, // discard
		{"fc00::1", false},
		{"fd12:3456:789a::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"febf::1", false},
		{"fec0::1", false}, // site-local
		{"ff02::1", false},
		{"ff05::2", false},
		{"2001::1", false},            // Teredo
		{"2001:2::1", false},          // benchmarking
		{"2001:10::1", false},         // ORCHID
		{"2001:db8::1", false},        // documentation
		{"3fff::1", false},            // documentation (RFC 9637)
		{"5f00::1", false},            // SRv6
		{"64:ff9b::7f00:1", false},    // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", false},     // NAT64 of 10.0.0.1
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"64:ff9b:1::808:808", false}, // local-use NAT64
		{"2002:7f00:1::1", false},     // 6to4 of 127.0.0.1
		{"2002:a00:1::1", false},      // 6to4 of 10.0.0.1
		{"2002:c0a8:101::1", false},   // 6to4 of 192.168.1.1
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := PublicAddr(a); got != tt.want {
			t.Errorf("PublicAddr(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if PublicAddr(netip.Addr{}) {
		t.Error("PublicAddr(zero Addr) = true, want false")
	}
}

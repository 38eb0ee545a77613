package main

import (
	"os"
	"testing"
)

func TestMemTotal(t *testing.T) {
	cases := []struct {
		meminfo string
		want    int64
		wantErr bool
	}{
		{"MemTotal:       24684092 kB\nMemFree:        22356624 kB\n", 24684092 << 10, false},
		{"MemFree:        22356624 kB\nMemTotal:  1024 kB\n", 1 << 20, false},
		{"MemFree:        22356624 kB\n", 0, true},
		{"MemTotal:       x kB\n", 0, true},
		{"MemTotal:       1024 MB\n", 0, true},
	}
	for _, c := range cases {
		got, err := memTotal([]byte(c.meminfo))
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("memTotal(%q) = %d, %v; want %d, error %v", c.meminfo, got, err, c.want, c.wantErr)
		}
	}
}

func TestStorageBudget(t *testing.T) {
	cases := []struct {
		spec    string
		want    int64
		wantErr bool
	}{
		{"64GiB", 64 << 30, false},
		{"0", 0, false},
		{"lots", 0, true},
	}
	for _, c := range cases {
		got, err := storageBudget(c.spec)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("storageBudget(%q) = %d, %v; want %d, error %v", c.spec, got, err, c.want, c.wantErr)
		}
	}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memTotal(data)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := storageBudget(""); err != nil || got != storageOvercommit*mem {
		t.Errorf("storageBudget(\"\") = %d, %v; want %d times the host's memory, %d", got, err, storageOvercommit, storageOvercommit*mem)
	}
}

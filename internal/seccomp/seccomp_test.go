package seccomp

import "testing"

func TestProgramAssembles(t *testing.T) {
	p, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	if len(p) < len(Denied) || len(p) > 4096 {
		t.Fatalf("program has %d instructions", len(p))
	}
	b := Encode(p)
	if len(b) != 8*len(p) {
		t.Fatalf("Encode gave %d bytes for %d instructions", len(b), len(p))
	}
	back, err := Decode(b)
	if err != nil || len(back) != len(p) {
		t.Fatalf("Decode(Encode(p)) = %d instructions, %v", len(back), err)
	}
	for i := range p {
		if back[i] != p[i] {
			t.Fatalf("instruction %d: %+v after the round trip, want %+v", i, back[i], p[i])
		}
	}
	if _, err := Decode(b[:7]); err == nil {
		t.Error("Decode accepted a partial instruction")
	}
}

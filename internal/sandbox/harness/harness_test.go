package harness

import (
	"errors"
	"testing"
)

const png1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
		check   func(*Report) bool
	}{
		{"ok with result", `{"ok":true,"result":"42","exit_code":0}`, false, func(r *Report) bool { return r.OK && *r.Result == "42" }},
		{"error", `{"ok":false,"error":{"name":"ValueError","message":"m","traceback":"t"},"exit_code":1}`, false,
			func(r *Report) bool { return !r.OK && r.Error.Name == "ValueError" && r.ExitCode == 1 }},
		{"png image", `{"ok":true,"images":[{"name":"figure-1.png","mime_type":"image/png","data":"` + png1x1 + `"}]}`, false,
			func(r *Report) bool { return len(r.Images) == 1 && len(r.Images[0].Data) > 8 }},
		{"not a png", `{"ok":true,"images":[{"name":"x.png","mime_type":"image/png","data":"aGVsbG8gd29ybGQ="}]}`, true, nil},
		{"wrong mime type", `{"ok":true,"images":[{"name":"x.svg","mime_type":"image/svg+xml","data":"` + png1x1 + `"}]}`, true, nil},
		{"bad base64", `{"ok":true,"images":[{"name":"x","mime_type":"image/png","data":"%%%"}]}`, true, nil},
		{"truncated json", `{"ok":tr`, true, nil},
		{"not an object", `[1,2]`, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%s) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && !tt.check(r) {
				t.Fatalf("Parse(%s) = %+v", tt.in, r)
			}
		})
	}
	if _, err := Parse(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("Parse(nil) = %v, want ErrEmpty", err)
	}
}

// FuzzParse feeds the report decoder what a hostile program could write to its
// report pipe: it must never panic, and what it accepts holds only PNG images.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"ok":true,"result":"1"}`))
	f.Add([]byte(`{"ok":true,"images":[{"name":"f.png","mime_type":"image/png","data":"` + png1x1 + `"}]}`))
	f.Add([]byte(`{"ok":false,"error":{"name":"E","message":"","traceback":""},"exit_code":-1}`))
	f.Add([]byte(`{"images":null,"result":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		for _, im := range r.Images {
			if im.MimeType != "image/png" || len(im.Data) < 8 || string(im.Data[:8]) != "\x89PNG\r\n\x1a\n" {
				t.Fatalf("accepted a non-PNG image: %+v", im)
			}
		}
	})
}

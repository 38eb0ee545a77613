package mcp

import "testing"

// FuzzParseFileURI: any URI a client sends is parsed without a panic, and one that
// parses names a file whose URI parses back to it.
func FuzzParseFileURI(f *testing.F) {
	for _, s := range []string{"codeexec://sessions/sess_1/files/out.csv", "codeexec://sessions/sess_1/files",
		"codeexec://sessions/a%2Fb/files/x%20y/%C3%A9.txt", "codeexec://sessions/s/files/%zz", "file:///etc/passwd", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		id, p, err := parseFileURI(uri)
		if err != nil {
			return
		}
		var again string
		if p == "" {
			again = filesURI(id)
		} else {
			again = fileURI(id, p)
		}
		id2, p2, err := parseFileURI(again)
		if err != nil || id2 != id || p2 != p {
			t.Errorf("parseFileURI(%q) = %q, %q; its URI %q parses to %q, %q, %v", uri, id, p, again, id2, p2, err)
		}
	})
}

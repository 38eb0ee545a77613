package agent

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// codeScanner reads the arguments of a code call as the model writes them, in
// pieces, and returns the code as it comes: the value of the object's first "code"
// member, unescaped. It never fails: on arguments that are not such an object it
// stops returning code (the call then fails when it is parsed whole, and the model
// is told). Pieces end on whole characters, so that each is valid UTF-8 for
// arguments that are.
type codeScanner struct {
	state   scanState
	depth   int             // nesting of the value being skipped
	inStr   bool            // the skipped value is inside a string
	esc     []byte          // an escape begun but not complete, from its '\'
	key     strings.Builder // the member name being read
	isCode  bool            // the value that follows is the code
	pending []byte          // code bytes not yet returned: an incomplete character
	hi      rune            // a high surrogate waiting for its low half
}

type scanState uint8

const (
	scanStart scanState = iota // before the object's '{'
	scanKey                    // before a member name, or the end
	scanName                   // in a member name
	scanColon                  // after a name
	scanValue                  // before a value
	scanCode                   // in the code string
	scanSkip                   // in another value
	scanNext                   // after a value: ',' or the end
	scanDone                   // the code was read, or the text is not such an object
)

// feed reads the next piece of the arguments and returns the code in it.
func (s *codeScanner) feed(piece string) string {
	var out []byte
	for i := 0; i < len(piece); i++ {
		c := piece[i]
		switch s.state {
		case scanStart:
			if c == '{' {
				s.state = scanKey
			} else if !isSpace(c) {
				s.state = scanDone
			}
		case scanKey:
			switch {
			case c == '"':
				s.key.Reset()
				s.state = scanName
			case c == '}':
				s.state = scanDone
			case !isSpace(c) && c != ',':
				s.state = scanDone
			}
		case scanName:
			if r, end := s.stringByte(c); end {
				s.state = scanColon
			} else if r != "" {
				s.key.WriteString(r)
			}
		case scanColon:
			if c == ':' {
				s.isCode = s.key.String() == "code"
				s.state = scanValue
			} else if !isSpace(c) {
				s.state = scanDone
			}
		case scanValue:
			switch {
			case isSpace(c):
			case c == '"' && s.isCode:
				s.state = scanCode
			default:
				s.state, s.depth, s.inStr = scanSkip, 0, false
				i-- // the value's first byte is read by scanSkip
			}
		case scanCode:
			r, end := s.stringByte(c)
			out = append(out, r...)
			if end {
				s.state = scanDone
			}
		case scanSkip:
			s.skipByte(c)
		case scanNext:
			switch {
			case c == ',':
				s.state = scanKey
			case !isSpace(c):
				s.state = scanDone
			}
		case scanDone:
			return s.flush(out, true)
		}
	}
	return s.flush(out, s.state == scanDone)
}

// flush returns the code bytes that end on a whole character, keeping the rest for
// the next piece; all of them when final.
func (s *codeScanner) flush(out []byte, final bool) string {
	b := append(s.pending, out...)
	s.pending = nil
	if !final {
		cut := len(b)
		for back := 1; back <= utf8.UTFMax && back <= len(b); back++ {
			if utf8.RuneStart(b[len(b)-back]) {
				if !utf8.FullRune(b[len(b)-back:]) {
					cut = len(b) - back
				}
				break
			}
		}
		s.pending = append([]byte(nil), b[cut:]...)
		b = b[:cut]
	}
	return string(b)
}

// stringByte reads byte c of a JSON string: the text it stands for ("" inside an
// escape), and whether it is the closing quote.
func (s *codeScanner) stringByte(c byte) (string, bool) {
	if s.esc == nil {
		switch c {
		case '\\':
			s.esc = []byte{c}
			return "", false
		case '"':
			return s.pendingSurrogate(), true
		}
		return s.pendingSurrogate() + string([]byte{c}), false // a byte of UTF-8, not a rune
	}
	s.esc = append(s.esc, c)
	if s.esc[1] != 'u' {
		s.esc = nil
		r, ok := simpleEscapes[c]
		if !ok {
			r = string([]byte{c}) // an invalid escape: encoding/json refuses the arguments
		}
		return s.pendingSurrogate() + r, false
	}
	if len(s.esc) < 6 {
		return "", false
	}
	n, err := strconv.ParseUint(string(s.esc[2:]), 16, 16)
	s.esc = nil
	r := rune(n)
	if err != nil {
		r = utf8.RuneError
	}
	switch {
	case s.hi != 0 && utf16.IsSurrogate(r) && r >= 0xDC00:
		pair := utf16.DecodeRune(s.hi, r)
		s.hi = 0
		return string(pair), false
	case utf16.IsSurrogate(r) && r < 0xDC00:
		prev := s.pendingSurrogate()
		s.hi = r
		return prev, false
	}
	return s.pendingSurrogate() + string(r), false
}

// pendingSurrogate returns a high surrogate that no low half followed, as
// encoding/json decodes it: U+FFFD.
func (s *codeScanner) pendingSurrogate() string {
	if s.hi == 0 {
		return ""
	}
	s.hi = 0
	return string(utf8.RuneError)
}

var simpleEscapes = map[byte]string{'"': `"`, '\\': `\`, '/': "/", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t"}

// skipByte reads byte c of a value that is not the code.
func (s *codeScanner) skipByte(c byte) {
	switch {
	case s.inStr && s.esc != nil:
		s.esc = nil
	case s.inStr && c == '\\':
		s.esc = []byte{c}
	case s.inStr:
		if c == '"' {
			s.inStr = false
			s.endSkipped()
		}
	case c == '"':
		s.inStr = true
	case c == '{' || c == '[':
		s.depth++
	case c == '}' || c == ']':
		if s.depth == 0 { // the end of the object after a scalar
			s.state = scanDone
			return
		}
		s.depth--
		s.endSkipped()
	case c == ',' && s.depth == 0:
		s.state = scanKey
	}
}

// endSkipped moves on when the skipped value is complete.
func (s *codeScanner) endSkipped() {
	if s.depth == 0 {
		s.state = scanNext
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

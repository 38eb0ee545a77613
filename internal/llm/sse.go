package llm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// sseEvent is one dispatched server-sent event. Fields id and retry are parsed and
// dropped: an upstream stream is never resumed, since a chat completion cannot be.
type sseEvent struct {
	Type string // the "event" field; "" means "message"
	Data string
}

// sseReader parses text/event-stream as the WHATWG HTML standard defines it: lines
// end in LF, CRLF or a lone CR; ":" starts a comment; "field: value" loses one space
// after the colon; data lines of one event are joined with "\n"; a blank line
// dispatches the event, and one without data is no event.
type sseReader struct {
	sc      *bufio.Scanner
	max     int
	started bool
}

// newSSEReader reads events from r; a line or an event's data longer than max bytes
// is an error wrapping ErrTooLarge.
func newSSEReader(r io.Reader, max int) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), max+1)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc, max: max}
}

// next returns the next event, or io.EOF at the end of input. An event still being
// built when the input ends is dispatched, though the standard drops it: servers
// that omit the last blank line should not lose their last event.
func (r *sseReader) next() (sseEvent, error) {
	var (
		ev      sseEvent
		data    strings.Builder
		hasData bool
	)
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if !r.started {
			r.started = true
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		if len(line) == 0 {
			if hasData {
				ev.Data = data.String()
				return ev, nil
			}
			ev = sseEvent{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "event":
			ev.Type = string(value)
		case "data":
			if data.Len()+len(value)+1 > r.max {
				return sseEvent{}, fmt.Errorf("%w: event data exceeds %d bytes", ErrTooLarge, r.max)
			}
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		}
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return sseEvent{}, fmt.Errorf("%w: line exceeds %d bytes", ErrTooLarge, r.max)
		}
		return sseEvent{}, err
	}
	if hasData {
		ev.Data = data.String()
		return ev, nil
	}
	return sseEvent{}, io.EOF
}

// scanSSELines is a bufio.SplitFunc for lines ending in LF, CRLF or CR.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		switch {
		case i+1 < len(data) && data[i+1] == '\n':
			return i + 2, data[:i], nil
		case i+1 < len(data) || atEOF:
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // a CR at the end of the buffer: is an LF next?
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

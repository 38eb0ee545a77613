// Package textfit lays named sections of text out within a byte budget, sharing it
// fairly, for what a model reads of an execution (its stdout, stderr, result and
// traceback): a long stdout must not crowd out the error that explains it.
package textfit

import (
	"fmt"
	"strings"
)

// Section is one named part of the text.
type Section struct {
	Name, Text string
	// Truncated says the text was already cut before it came here (an output limit).
	Truncated bool
}

// Notes are the words a layout adds about what it or an earlier limit cut.
type Notes struct {
	// Cut is a format with one %d, the bytes cut from the middle of a section.
	Cut string
	// Truncated is a format with one %s, the name of a section that came truncated.
	Truncated string
}

// Layout writes head, then each non-empty section as "name:\ntext", then tail, in at
// most about max bytes: head and tail whole, and the rest shared among the sections
// (see Shares); a section over its share keeps its start and its end.
func Layout(head string, sections []Section, tail string, max int, n Notes) string {
	sizes := make([]int, len(sections))
	for i, s := range sections {
		sizes[i] = len(s.Text)
	}
	shares := Shares(sizes, max-len(head)-len(tail))
	var b strings.Builder
	b.WriteString(head)
	for i, s := range sections {
		if s.Text == "" {
			continue
		}
		text := s.Text
		if shares[i] < len(text) {
			text = CutMiddle(text, shares[i], n.Cut)
		}
		fmt.Fprintf(&b, "%s:\n%s", s.Name, text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
		if s.Truncated {
			fmt.Fprintf(&b, n.Truncated+"\n", s.Name)
		}
	}
	b.WriteString(tail)
	return b.String()
}

// Shares divides budget among parts of the given sizes: a part smaller than an equal
// share keeps all of it, and what it leaves goes to the others.
func Shares(sizes []int, budget int) []int {
	shares := make([]int, len(sizes))
	left := make([]int, 0, len(sizes))
	for i := range sizes {
		left = append(left, i)
	}
	budget = max(budget, 0)
	for len(left) > 0 {
		share := budget / len(left)
		var next []int
		for _, i := range left {
			if sizes[i] <= share {
				shares[i] = sizes[i]
				budget -= sizes[i]
			} else {
				next = append(next, i)
			}
		}
		if len(next) == len(left) {
			for _, i := range next {
				shares[i] = share
			}
			break
		}
		left = next
	}
	return shares
}

// CutMiddle keeps about n bytes of s, its start and its end, with note (a format with
// one %d: the bytes cut) between them.
func CutMiddle(s string, n int, note string) string {
	keep := min(max(n/2, 0), len(s)/2)
	return strings.ToValidUTF8(s[:keep], "") + "\n" + fmt.Sprintf(note, len(s)-2*keep) + "\n" +
		strings.ToValidUTF8(s[len(s)-keep:], "")
}

// FirstLine is the first line of s, at most n bytes of it (cut on a character
// boundary, with an ellipsis).
func FirstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

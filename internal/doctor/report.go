package doctor

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

var symbols = map[Status]string{OK: "✓", Warn: "!", Fail: "✗"}

// Write prints checks one a line, a symbol, the name and the detail, with an indented
// "fix:" line under each problem, then a summary line.
func Write(w io.Writer, checks []Check) error {
	width := 0
	for _, c := range checks {
		width = max(width, utf8.RuneCountInString(c.Name))
	}
	var b strings.Builder
	for _, c := range checks {
		sym, ok := symbols[c.Status]
		if !ok {
			sym = "?"
		}
		fmt.Fprintf(&b, "%s %-*s  %s\n", sym, width, c.Name, c.Detail)
		if c.Fix != "" && c.Status != OK {
			fmt.Fprintf(&b, "  %*s  fix: %s\n", width, "", c.Fix)
		}
	}
	b.WriteString(Summary(checks) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Summary is "all checks passed", or how many problems there are.
func Summary(checks []Check) string {
	fails, warns := Count(checks, Fail), Count(checks, Warn)
	switch n := fails + warns; n {
	case 0:
		return "all checks passed"
	case 1:
		return fmt.Sprintf("1 problem found (%s)", plural(fails, "failure")+", "+plural(warns, "warning"))
	default:
		return fmt.Sprintf("%d problems found (%s)", n, plural(fails, "failure")+", "+plural(warns, "warning"))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

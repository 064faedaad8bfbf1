package runs

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// CommandLine renders a recorded command on one line: a --shell command
// as given, argv words shell-quoted when needed; control characters are
// escaped.
func CommandLine(argv []string, shell bool) string {
	if len(argv) == 0 {
		return "-"
	}
	var s string
	if shell {
		s = strings.Join(argv, " ")
	} else {
		words := make([]string, len(argv))
		for i, w := range argv {
			words[i] = QuoteWord(w)
		}
		s = strings.Join(words, " ")
	}
	return Escape(s)
}

// QuoteWord shell-quotes one word (sshx.Quote) when it needs it.
func QuoteWord(w string) string {
	safe := w != ""
	for _, c := range w {
		if !(unicode.IsLetter(c) || unicode.IsDigit(c) || strings.ContainsRune("-_./=:,+@%^", c)) {
			safe = false
			break
		}
	}
	if safe {
		return w
	}
	return sshx.Quote(w)
}

// Escape writes control characters as \n, \t, \r or \xNN, so a value
// prints on one line.
func Escape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case unicode.IsControl(c):
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// LogIncompleteNote says how much of a run's output its log lost.
func LogIncompleteNote(rec *Record) string {
	why := rec.LogError
	if why == "" {
		why = "write error"
	}
	note := fmt.Sprintf("log incomplete: %s after %d bytes", why, rec.LogStoppedAt)
	if lost := rec.LogBytes - rec.LogStoppedAt; lost > 0 {
		note += fmt.Sprintf("; the remaining %d bytes of output were not kept", lost)
	}
	return note
}

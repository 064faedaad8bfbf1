package sshx

import (
	"errors"
	"fmt"
	"strings"
)

// Quote returns s as one POSIX shell word in single quotes: every byte is
// literal. A single quote becomes close-quote, backslash-quote, open-quote,
// and the empty string becomes a pair of single quotes:
//
//	it's  ->  'it'\''s'
//	(empty) ->  ''
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteArgs quotes each word with Quote and joins them with spaces.
func QuoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// Split is a minimal POSIX-shell word splitter for what Quote and QuoteArgs
// produce (and hand-written single-quoted, double-quoted and backslash
// words). It exists to check quoting round trips in tests and fuzzing; it
// performs no expansion and, to keep that check honest, rejects unquoted
// shell metacharacters and any $ or backtick inside double quotes.
func Split(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote at offset %d", i)
			}
			cur.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			start := i
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated double quote at offset %d", start)
				}
				c = s[i]
				if c == '"' {
					break
				}
				if c == '$' || c == '`' {
					return nil, fmt.Errorf("expansion %q inside double quotes at offset %d", c, i)
				}
				if c == '\\' && i+1 < len(s) {
					switch n := s[i+1]; n {
					case '$', '`', '"', '\\':
						cur.WriteByte(n)
						i++
						continue
					case '\n': // line continuation
						i++
						continue
					}
				}
				cur.WriteByte(c)
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			if s[i] == '\n' { // line continuation
				continue
			}
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("|&;<>()$`*?[", c) >= 0,
			!inWord && (c == '#' || c == '~'):
			return nil, fmt.Errorf("unquoted shell metacharacter %q at offset %d", c, i)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

package iostreams

import (
	"os"

	"golang.org/x/term"
)

// Terminal is a reader that says whether it is a terminal (tests wrap a
// buffer in one to act as an interactive stdin).
type Terminal interface {
	IsTerminal() bool
}

// IsStdinTTY reports whether stdin is a terminal: an *os.File on a
// terminal, or a reader that implements Terminal and says so.
func (s *IOStreams) IsStdinTTY() bool {
	switch in := s.In.(type) {
	case *os.File:
		return term.IsTerminal(int(in.Fd()))
	case Terminal:
		return in.IsTerminal()
	}
	return false
}

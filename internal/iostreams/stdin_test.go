package iostreams

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

type fakeTTY struct{ bytes.Buffer }

func (*fakeTTY) IsTerminal() bool { return true }

func TestIsStdinTTY(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, _, _, _ := Test()
	for _, tc := range []struct {
		name string
		in   any
		want bool
	}{
		{"buffer", &bytes.Buffer{}, false},
		{"regular file", f, false},
		{"terminal", &fakeTTY{}, true},
	} {
		s.In = tc.in.(interface{ Read([]byte) (int, error) })
		if got := s.IsStdinTTY(); got != tc.want {
			t.Errorf("%s: IsStdinTTY = %v, want %v", tc.name, got, tc.want)
		}
	}
}

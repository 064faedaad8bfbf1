package config

import (
	"strings"
	"testing"
)

// The artifact bounds come from any layer and must be at least 1.
func TestArtifactBounds(t *testing.T) {
	f := newFixture(t)
	f.writeUser("artifacts:\n  maxFiles: 5\n  maxBytes: 1024\n")
	c := f.mustLoad(nil)
	if c.Artifacts.MaxFiles != 5 || c.Artifacts.MaxBytes != 1024 {
		t.Errorf("from the user file: %+v", c.Artifacts)
	}
	f.writeUser("artifacts:\n  maxFiles: 0\n")
	if _, err := f.load(nil); err == nil || !strings.Contains(err.Error(), "artifacts.maxFiles must be at least 1") {
		t.Errorf("maxFiles 0: %v", err)
	}
}

// Package all registers every provider crabbox ships. Import it (for its
// side effect) where providers are built by name.
package all

import (
	_ "github.com/crabbox-dev/crabbox/internal/coder"   // provider "coder"
	_ "github.com/crabbox-dev/crabbox/internal/sshhost" // provider "ssh" (aliases static, static-ssh)
)

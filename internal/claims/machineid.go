package claims

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MachineIDFile is the state dir's machine ID file.
const MachineIDFile = "machine-id"

// MachineID returns the state dir's machine ID: 32 random hex digits
// created once (0600 file <dir>/machine-id), never derived from the host.
// It names this state dir in a workspace's owner record.
func MachineID(dir string) (string, error) {
	p := filepath.Join(dir, MachineIDFile)
	if id, err := readMachineID(p); err == nil {
		return id, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	tmp, err := os.CreateTemp(dir, ".machine-id-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// Link, not rename: a concurrent first run that won keeps its ID.
	if err := os.Link(tmp.Name(), p); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return readMachineID(p)
}

func readMachineID(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if len(id) != 32 {
		return "", fmt.Errorf("machine ID file %s is malformed; remove it to create a new one", p)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", fmt.Errorf("machine ID file %s is malformed; remove it to create a new one", p)
	}
	return strings.ToLower(id), nil
}

package claims

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestMachineID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	id, err := MachineID(dir)
	if err != nil || len(id) != 32 {
		t.Fatalf("MachineID = %q, %v", id, err)
	}
	st, err := os.Stat(filepath.Join(dir, MachineIDFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("machine-id file: %v %v", st, err)
	}
	again, err := MachineID(dir)
	if err != nil || again != id {
		t.Fatalf("second call = %q, %v; want %q", again, err, id)
	}
	other, _ := MachineID(filepath.Join(t.TempDir(), "state"))
	if other == id {
		t.Fatal("two state dirs share a machine ID")
	}
	if err := os.WriteFile(filepath.Join(dir, MachineIDFile), []byte("hostname\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := MachineID(dir); err == nil {
		t.Fatal("malformed machine ID accepted")
	}
}

// TestMachineIDConcurrentFirstUse: racing first uses agree on one ID.
func TestMachineIDConcurrentFirstUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := MachineID(dir)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids differ: %v", ids)
		}
	}
}

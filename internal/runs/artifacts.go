package runs

import "path/filepath"

// Files in a run directory besides the record and the log.
const (
	// ArtifactsDirName holds the files a run's --artifact-glob and
	// --require-artifact patterns fetched, at their path below the remote
	// workdir (<run dir>/artifacts/<path>).
	ArtifactsDirName = "artifacts"
	// BundleName is the failure bundle of a failed or interrupted run.
	BundleName = "bundle.tgz"
)

// Artifact is one fetched file: its path below the remote workdir
// (slash-separated, clean, relative), its size and the SHA-256 of the
// bytes stored locally.
type Artifact struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ArtifactsDir is where run id's artifacts are stored.
func (s *Store) ArtifactsDir(id string) string {
	return filepath.Join(s.RunDir(id), ArtifactsDirName)
}

// BundlePath is where run id's failure bundle is (or would be) written.
func (s *Store) BundlePath(id string) string {
	return filepath.Join(s.RunDir(id), BundleName)
}

// ArtifactBytes is the total size of the artifacts.
func ArtifactBytes(as []Artifact) int64 {
	var n int64
	for _, a := range as {
		n += a.Size
	}
	return n
}

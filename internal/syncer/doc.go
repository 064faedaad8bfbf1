// Package syncer copies the local git working tree (tracked plus
// untracked, non-ignored files, filtered by crabbox's exclude rules) to a
// remote workdir with rsync over the process's one SSH session
// (docs/commands/run.md, What happens).
//
// A sync is: build the manifest locally, check the guards, fingerprint it,
// then one remote round trip ("prepare") that either finds the same
// fingerprint and skips, or prunes files an earlier sync sent that left
// the manifest; then rsync --files-from, then one round trip ("finalize")
// that records the manifest and the fingerprint under
// <workdir>/.crabbox/sync/. Files crabbox never sent are never touched.
//
// One writer at a time: past the skip check, each sync attempt records a
// new generation under the workdir's lock (.crabbox/sync/lock); the
// receiving rsync and finalize hold that lock and refuse to write for any
// other generation, so an rsync left over from a killed run never writes
// after a newer sync began (see scripts.go). rsync reads every path as
// "./<path>" (a leading # or ; would make it a comment) and runs with
// --force (a file may replace a directory the workspace filled).
package syncer

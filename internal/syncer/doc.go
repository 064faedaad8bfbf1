// Package syncer copies the local git working tree (tracked plus
// untracked, non-ignored files, filtered by crabbox's exclude rules) to a
// remote workdir with rsync over the process's one SSH session (spec §6,
// decisions D7, D9, D11).
//
// A sync is: build the manifest locally, check the guards, fingerprint it,
// then one remote round trip ("prepare") that either finds the same
// fingerprint and skips, or prunes files an earlier sync sent that left
// the manifest; then rsync --files-from, then one round trip ("finalize")
// that records the manifest and the fingerprint under
// <workdir>/.crabbox/sync/. Files crabbox never sent are never touched.
package syncer

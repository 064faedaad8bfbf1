package syncer

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// errIndexUnsupported: an index this reader does not take apart (split
// index, sparse index, an unknown version or hash); the scan then asks git
// for every entry instead (the ls-files scan).
var errIndexUnsupported = errors.New("index format not supported by the fast scan")

// indexRec is one entry of git's index file, as git last recorded it.
type indexRec struct {
	path         string
	mode         uint32 // 100644, 100755, 120000, 160000
	oid          string // hex object id
	id           string // "b:" + oid, the fingerprint's field for the blob
	stage        int    // 0 normally; 1-3 for an unmerged path
	assumeValid  bool   // assume-unchanged: git never looks at the file
	skipWorktree bool   // sparse checkout: git never looks at the file
	intentToAdd  bool   // `git add -N`: no content recorded
	ctime, mtime int64  // seconds
	size         int64  // the file's size when recorded (low 32 bits)
}

// parseIndex reads a git index file (versions 2-4, SHA-1 or SHA-256
// object ids) into its entries. hashLen is the object id length in bytes
// (20 or 32). Extensions are skipped, but a split index ("link") or a
// sparse index ("sdir") is errIndexUnsupported: their entries are not all
// in this file, or name directories. A truncated or inconsistent file is
// an error.
func parseIndex(data []byte, hashLen int) ([]indexRec, error) {
	if hashLen != 20 && hashLen != 32 {
		return nil, errIndexUnsupported
	}
	if len(data) < 12+hashLen || string(data[:4]) != "DIRC" {
		return nil, fmt.Errorf("not a git index (%d bytes)", len(data))
	}
	version := binary.BigEndian.Uint32(data[4:8])
	if version < 2 || version > 4 {
		return nil, errIndexUnsupported
	}
	n := binary.BigEndian.Uint32(data[8:12])
	body := data[:len(data)-hashLen] // the trailing checksum is not parsed
	// Paths and ids are substrings of two strings made once, not an
	// allocation each (a large index has tens of thousands).
	sbody := string(body)
	// Every id as "b:<hex>", back to back in one string: oid and id are
	// substrings of it.
	stride := 2 + 2*hashLen
	hexIDs := make([]byte, 0, min(int(n), len(body)/(40+hashLen))*stride)
	recs := make([]indexRec, 0, min(int(n), len(body)/(40+hashLen)))
	off := 12
	prev := ""
	for i := uint32(0); i < n; i++ {
		const fixed = 40 // ctime, mtime (sec, nsec), dev, ino, mode, uid, gid, size
		if off+fixed+hashLen+2 > len(body) {
			return nil, errors.New("git index: truncated entry")
		}
		e := body[off:]
		r := indexRec{
			ctime: int64(binary.BigEndian.Uint32(e[0:4])),
			mtime: int64(binary.BigEndian.Uint32(e[8:12])),
			mode:  binary.BigEndian.Uint32(e[24:28]),
			size:  int64(binary.BigEndian.Uint32(e[36:40])),
		}
		hexIDs = hex.AppendEncode(append(hexIDs, 'b', ':'), e[fixed:fixed+hashLen])
		flags := binary.BigEndian.Uint16(e[fixed+hashLen:])
		r.assumeValid = flags&0x8000 != 0
		r.stage = int(flags>>12) & 3
		nameLen := int(flags & 0x0fff)
		p := off + fixed + hashLen + 2
		if flags&0x4000 != 0 {
			if version < 3 || p+2 > len(body) {
				return nil, errors.New("git index: bad extended flags")
			}
			ext := binary.BigEndian.Uint16(body[p:])
			r.skipWorktree = ext&0x4000 != 0
			r.intentToAdd = ext&0x2000 != 0
			p += 2
		}
		if version == 4 {
			// Prefix compression: strip N bytes of the previous path, then
			// a NUL-terminated suffix; no padding.
			strip, k := binary.Uvarint(body[p:])
			if k <= 0 || strip > uint64(len(prev)) {
				return nil, errors.New("git index: bad path prefix")
			}
			p += k
			end := indexNUL(body, p)
			if end < 0 {
				return nil, errors.New("git index: unterminated path")
			}
			r.path = prev[:len(prev)-int(strip)] + string(body[p:end])
			off = end + 1
		} else {
			end := indexNUL(body, p)
			if end < 0 || (nameLen < 0x0fff && end-p != nameLen) {
				return nil, errors.New("git index: bad path length")
			}
			r.path = sbody[p:end]
			// Entries are padded with 1-8 NULs to a multiple of 8 bytes.
			off += (end - off + 8) &^ 7
		}
		if r.path == "" || r.path < prev || (r.path == prev && r.stage == 0) {
			return nil, errors.New("git index: entries out of order")
		}
		if r.mode&0o170000 == 0o040000 {
			return nil, errIndexUnsupported // a sparse directory entry
		}
		prev = r.path
		recs = append(recs, r)
	}
	if off > len(body) {
		return nil, errors.New("git index: truncated")
	}
	ids := string(hexIDs)
	for i := range recs {
		recs[i].id = ids[i*stride : (i+1)*stride]
		recs[i].oid = recs[i].id[2:]
	}
	// Extensions: 4-byte signature, 4-byte size, data.
	for off < len(body) {
		if off+8 > len(body) {
			return nil, errors.New("git index: truncated extension")
		}
		sig := string(body[off : off+4])
		size := int(binary.BigEndian.Uint32(body[off+4 : off+8]))
		if sig == "link" || sig == "sdir" {
			return nil, errIndexUnsupported
		}
		if sig[0] < 'A' || sig[0] > 'Z' {
			return nil, errIndexUnsupported // a required extension we do not know
		}
		if size < 0 || off+8+size > len(body) {
			return nil, errors.New("git index: bad extension size")
		}
		off += 8 + size
	}
	return recs, nil
}

func indexNUL(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] == 0 {
			return i
		}
	}
	return -1
}

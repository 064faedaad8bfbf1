package config

import "errors"

// ArtifactsConfig is the artifacts: block: the bounds of one run's
// fetched files.
type ArtifactsConfig struct {
	MaxFiles int
	MaxBytes int64
}

func checkPositiveInt(v any) (any, error) {
	if v.(int) <= 0 {
		return nil, errors.New("must be at least 1")
	}
	return v, nil
}

func checkPositiveInt64(v any) (any, error) {
	if v.(int64) <= 0 {
		return nil, errors.New("must be at least 1")
	}
	return v, nil
}

package claims

import "time"

// Touch sets the claim's lastUsedAt to now, marking the lease as in use
// (cleanup counts its idle time from there). A lease without a claim is
// left alone (no error): there is nothing to keep alive.
func (s *Store) Touch(leaseID string, now time.Time) error {
	_, err := s.Update(leaseID, func(c *Claim, exists bool) error {
		if !exists {
			return ErrNoChange
		}
		c.LastUsedAt = formatTime(now)
		return nil
	})
	return err
}

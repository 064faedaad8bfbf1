package lease

// Target is a provider-neutral SSH endpoint for one lease.
type Target struct {
	User string
	// Host is the host alias given to ssh; with a ProxyCommand it only keys
	// known_hosts and the control path.
	Host string
	Port int
	// ProxyCommand is the full, already quoted ProxyCommand string (empty
	// for direct connections).
	ProxyCommand string
	// KnownHostsFile is the per-target known_hosts file.
	KnownHostsFile string
	// ReadyCheck is a remote shell command that succeeds when the target can
	// take a sync and a command.
	ReadyCheck string
	// WorkRoot is the remote base directory for work dirs.
	WorkRoot string
	// IdentityFile, when set, is the only key offered (-i <file> -o
	// IdentitiesOnly=yes); proxy targets (Coder) authenticate in the proxy
	// and leave it empty.
	IdentityFile string
	// StrictHostKeys refuses a host whose key is not already in
	// KnownHostsFile (StrictHostKeyChecking=yes); otherwise a first key is
	// recorded there (accept-new) and a changed one is still refused.
	StrictHostKeys bool
	// ControlKey, when set, names the machine for a control master that
	// outlives one crabbox process (sshx.SessionOptions.Persist): the
	// provider and the machine's stable ID (Coder's workspace ID), never a
	// name that could be reused for another machine.
	ControlKey string
}

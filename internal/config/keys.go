package config

import (
	"sort"
	"time"
)

// Kind is the value type of a configuration key.
type Kind string

// Key kinds.
const (
	KindString   Kind = "string"
	KindBool     Kind = "bool"
	KindDuration Kind = "duration"
	KindInt      Kind = "int"
	KindInt64    Kind = "int64"
	KindList     Kind = "list"
	KindEnum     Kind = "enum"
	// KindHosts is a list of SSH hosts: [user@]host[:port] strings (env,
	// flags) or, in YAML, also mappings with per-host settings.
	KindHosts Kind = "hosts"
)

// Defaults that other packages may need to compare against.
const (
	DefaultTarget          = "linux"
	DefaultWorkRoot        = "/work/crabbox"
	DefaultCoderWorkRoot   = "/home/coder/crabbox"
	DefaultWorkspacePrefix = "crabbox-"
	DefaultCoderCLI        = "coder"
	DefaultClass           = "beast"
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultTTL             = 90 * time.Minute
	DefaultSyncTimeout     = 15 * time.Minute
	DefaultSSHPersist      = 90 * time.Second
	DefaultMaxShards       = 8
	MaxSSHPersist          = 24 * time.Hour

	// MaxWorkspacePrefixLen is the longest normalized coder.workspacePrefix
	// accepted; Coder workspace names are at most 32 characters.
	MaxWorkspacePrefixLen = 20
)

// KeySpec describes one configuration key: its YAML key, aliases, env var,
// flag, kind and default.
type KeySpec struct {
	Key     string   // dotted YAML key, e.g. "coder.template"
	Aliases []string // other YAML keys that set the same value
	Env     string   // environment variable, "" when none
	Flag    string   // flag name without "--", "" when none
	Kind    Kind
	Default string   // default, as shown to users
	Values  []string // accepted values for enums
	Usage   string   // one-line description
	// FlagOn names the commands that take the flag (nil: every command
	// that addresses a lease).
	FlagOn []string
	// NeedsTrust marks a key that chooses what runs on this machine, what
	// leaves it, or what is destroyed. A repo config file sets it only when
	// the user trusted that file's exact content (crabbox config trust);
	// user config, env and flags always apply.
	NeedsTrust bool
}

// keyDef is a KeySpec plus how to parse, check and store its value.
type keyDef struct {
	KeySpec
	def any // typed default: string, bool, time.Duration, int, int64 or []string
	// check normalizes and validates a parsed value. Its error message does
	// not name the key: the caller prefixes the key, env var or flag.
	check func(v any) (any, error)
	// set stores the value in its Config field; nil for a key that has
	// none (it is only checked and shown).
	set func(c *Config, v any)
	// noneClears makes the env value "none" (and the flag value "none")
	// clear a list.
	noneClears bool
	// alsoSetsByFlag names another key the flag also sets.
	alsoSetsByFlag string
	// keepEmpty keeps empty YAML list entries for check to reject.
	keepEmpty bool
	// path expands a leading ~ with HOME from the Env.
	path bool
}

// runOnly scopes a flag to `crabbox run`.
var runOnly = []string{"run"}

func str(v any) string        { return v.(string) }
func boolean(v any) bool      { return v.(bool) }
func dur(v any) time.Duration { return v.(time.Duration) }
func list(v any) []string     { return v.([]string) }

// keyTable is the single declaration of every setting.
var keyTable = []*keyDef{
	{
		KeySpec: KeySpec{Key: "provider", Env: "CRABBOX_PROVIDER", Flag: "provider", Kind: KindEnum, Default: "",
			Values: []string{"coder", "ssh"},
			Usage:  "Lease provider: coder or ssh (static and static-ssh mean ssh)."},
		def: "", check: checkProvider,
		set: func(c *Config, v any) { c.Provider = str(v) },
	},
	{
		// Only linux: every workspace crabbox runs on is Linux. The key and
		// flag stay so `--target linux` (in crabbox's own stop hints, and in
		// commands written for other crabbox implementations) is accepted.
		KeySpec: KeySpec{Key: "target", Env: "CRABBOX_TARGET", Flag: "target", Kind: KindEnum, Default: DefaultTarget,
			Values: []string{"linux"},
			Usage:  "Target OS of the remote box: linux only (accepted for compatibility)."},
		def: DefaultTarget, check: checkTarget,
	},
	{
		KeySpec: KeySpec{Key: "workRoot", Env: "CRABBOX_WORK_ROOT", Kind: KindString, Default: DefaultWorkRoot,
			Usage: "Generic remote base directory for work dirs: a non-default value fills an unset coder.workRoot and ssh.workRoot.", NeedsTrust: true},
		def: DefaultWorkRoot, check: checkAbsPath,
	},
	{
		KeySpec: KeySpec{Key: "lease.idleTimeout", Aliases: []string{"idleTimeout"}, Env: "CRABBOX_IDLE_TIMEOUT", Flag: "idle-timeout",
			Kind: KindDuration, Default: "30m",
			Usage: "Idle time after which a lease's local claim counts as expired (e.g. 30m)."},
		def: DefaultIdleTimeout, check: checkPositiveDuration,
		set: func(c *Config, v any) { c.IdleTimeout = dur(v) },
	},
	{
		KeySpec: KeySpec{Key: "lease.ttl", Aliases: []string{"ttl"}, Env: "CRABBOX_TTL", Flag: "ttl",
			Kind: KindDuration, Default: "90m",
			Usage: "Maximum lease lifetime recorded on the lease (e.g. 90m)."},
		def: DefaultTTL, check: checkPositiveDuration,
		set: func(c *Config, v any) { c.TTL = dur(v) },
	},
	{
		KeySpec: KeySpec{Key: "class", Env: "CRABBOX_DEFAULT_CLASS", Flag: "class", Kind: KindString, Default: DefaultClass,
			Usage: "Machine class of other crabbox providers; refused with provider=coder, no effect otherwise."},
		def: DefaultClass, check: trimString,
	},
	{
		KeySpec: KeySpec{Key: "serverType", Aliases: []string{"type"}, Env: "CRABBOX_SERVER_TYPE", Flag: "type", Kind: KindString, Default: "",
			Usage: "Server type of other crabbox providers; refused with provider=coder, no effect otherwise."},
		def: "", check: trimString,
	},

	// coder:
	{
		KeySpec: KeySpec{Key: "coder.cliPath", Env: "CRABBOX_CODER_CLI", Flag: "coder-cli", Kind: KindString, Default: DefaultCoderCLI,
			Usage: "Path or name of the coder CLI (~ is expanded).", NeedsTrust: true},
		def: DefaultCoderCLI, check: checkCLIPath, path: true,
		set: func(c *Config, v any) { c.Coder.CLIPath = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.template", Env: "CRABBOX_CODER_TEMPLATE", Flag: "coder-template", Kind: KindString,
			Usage: "Coder template used to create workspaces."},
		def: "", check: trimString,
		set: func(c *Config, v any) { c.Coder.Template = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.preset", Env: "CRABBOX_CODER_PRESET", Flag: "coder-preset", Kind: KindString,
			Usage: "Coder template preset passed as --preset."},
		def: "", check: trimString,
		set: func(c *Config, v any) { c.Coder.Preset = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.workspacePrefix", Env: "CRABBOX_CODER_WORKSPACE_PREFIX", Flag: "coder-workspace-prefix", Kind: KindString,
			Default: DefaultWorkspacePrefix,
			Usage:   "Prefix of Coder workspace names crabbox creates."},
		def: DefaultWorkspacePrefix, check: checkPrefix,
		set: func(c *Config, v any) { c.Coder.WorkspacePrefix = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.workRoot", Env: "CRABBOX_CODER_WORK_ROOT", Flag: "coder-work-root", Kind: KindString,
			Default: DefaultCoderWorkRoot,
			Usage:   "Remote base directory for work dirs in Coder workspaces (also sets the generic work root).", NeedsTrust: true},
		def: DefaultCoderWorkRoot, check: checkCoderWorkRoot, alsoSetsByFlag: "workRoot",
		set: func(c *Config, v any) { c.Coder.WorkRoot = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.wait", Env: "CRABBOX_CODER_WAIT", Flag: "coder-wait", Kind: KindEnum, Default: "yes",
			Values: []string{"yes", "no", "auto"},
			Usage:  "Wait mode for coder ssh --wait: yes, no or auto (no also creates with --no-wait)."},
		def: "yes", check: checkWait,
		set: func(c *Config, v any) { c.Coder.Wait = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.useParameterDefaults", Env: "CRABBOX_CODER_USE_PARAMETER_DEFAULTS", Flag: "coder-use-parameter-defaults",
			Kind: KindBool, Default: "false",
			Usage: "Pass --use-parameter-defaults to coder create."},
		def: false,
		set: func(c *Config, v any) { c.Coder.UseParameterDefaults = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.parameters", Env: "CRABBOX_CODER_PARAMETERS", Flag: "coder-parameter", Kind: KindList,
			Usage: "Coder template parameters as name=value[,name=value] (replaces the list; none clears)."},
		def: []string{}, check: checkParameters, noneClears: true, keepEmpty: true,
		set: func(c *Config, v any) { c.Coder.Parameters = list(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.richParameterFile", Env: "CRABBOX_CODER_RICH_PARAMETER_FILE", Flag: "coder-rich-parameter-file", Kind: KindString,
			Usage: "Rich parameter file passed to coder create (~ is expanded).", NeedsTrust: true},
		def: "", check: trimString, path: true,
		set: func(c *Config, v any) { c.Coder.RichParameterFile = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "coder.deleteOnRelease", Env: "CRABBOX_CODER_DELETE_ON_RELEASE", Flag: "coder-delete-on-release", Kind: KindBool,
			Default: "false",
			Usage:   "Delete the workspace on release instead of stopping it.", NeedsTrust: true},
		def: false,
		set: func(c *Config, v any) { c.Coder.DeleteOnRelease = boolean(v) },
	},

	// ssh:
	{
		KeySpec: KeySpec{Key: "ssh.hosts", Env: "CRABBOX_SSH_HOSTS", Flag: "ssh-host", Kind: KindHosts,
			Usage: "SSH hosts crabbox may claim, as user@host[:port] (none clears).", NeedsTrust: true},
		def: []SSHHost{}, check: checkSSHHosts, noneClears: true,
		set: func(c *Config, v any) { c.SSH.Hosts = sshHosts(v) },
	},
	{
		KeySpec: KeySpec{Key: "ssh.identityFile", Env: "CRABBOX_SSH_IDENTITY", Flag: "ssh-identity", Kind: KindString,
			Usage: "Private key offered to SSH hosts without their own identityFile (~ is expanded; default: ssh's own choice).", NeedsTrust: true},
		def: "", check: checkLocalPathValue, path: true,
		set: func(c *Config, v any) { c.SSH.IdentityFile = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "ssh.knownHostsFile", Env: "CRABBOX_SSH_KNOWN_HOSTS", Flag: "ssh-known-hosts", Kind: KindString,
			Usage: "known_hosts file that must already hold the SSH hosts' keys (strict checking; default: crabbox records each host's key on first use).", NeedsTrust: true},
		def: "", check: checkLocalPathValue, path: true,
		set: func(c *Config, v any) { c.SSH.KnownHostsFile = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "ssh.workRoot", Env: "CRABBOX_SSH_WORK_ROOT", Flag: "ssh-work-root", Kind: KindString,
			Default: DefaultSSHWorkRoot,
			Usage:   "Remote base directory for work dirs on SSH hosts without their own workRoot (also sets the generic work root).", NeedsTrust: true},
		def: DefaultSSHWorkRoot, check: checkSSHWorkRoot, alsoSetsByFlag: "workRoot",
		set: func(c *Config, v any) { c.SSH.WorkRoot = str(v) },
	},
	{
		KeySpec: KeySpec{Key: "ssh.cleanWorkdir", Env: "CRABBOX_SSH_CLEAN_WORKDIR", Flag: "ssh-clean-workdir", Kind: KindBool,
			Default: "false",
			Usage:   "On release, also remove the lease's work dir (<workRoot>/<lease ID>) on the SSH host; the host itself is never touched.", NeedsTrust: true},
		def: false,
		set: func(c *Config, v any) { c.SSH.CleanWorkdir = boolean(v) },
	},

	{
		KeySpec: KeySpec{Key: "ssh.persist", Env: "CRABBOX_SSH_PERSIST", Kind: KindDuration,
			Default: "1m30s",
			Usage:   "How long a lease's ssh connection stays open after a command, for the next one (0: one connection per crabbox process; at most 24h). An open connection counts as activity for Coder's autostop."},
		def: DefaultSSHPersist, check: checkPersist,
		set: func(c *Config, v any) { c.SSH.Persist = dur(v) },
	},

	// sync:
	{
		KeySpec: KeySpec{Key: "sync.delete", Env: "CRABBOX_SYNC_DELETE", Kind: KindBool, Default: "true",
			Usage: "Prune remote files crabbox synced earlier that are gone locally."},
		def: true, set: func(c *Config, v any) { c.Sync.Delete = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.checksum", Env: "CRABBOX_SYNC_CHECKSUM", Flag: "checksum", FlagOn: runOnly, Kind: KindBool, Default: "false",
			Usage: "Compare file contents (rsync --checksum) instead of size and time."},
		def: false, set: func(c *Config, v any) { c.Sync.Checksum = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.gitSeed", Env: "CRABBOX_SYNC_GIT_SEED", Kind: KindBool, Default: "true",
			Usage: "Seed the remote work dir with a git clone of origin before the first sync."},
		def: true, set: func(c *Config, v any) { c.Sync.GitSeed = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.fingerprint", Env: "CRABBOX_SYNC_FINGERPRINT", Kind: KindBool, Default: "true",
			Usage: "Skip rsync when the remote fingerprint matches the local tree."},
		def: true, set: func(c *Config, v any) { c.Sync.Fingerprint = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.timeout", Env: "CRABBOX_SYNC_TIMEOUT", Kind: KindDuration, Default: "15m",
			Usage: "Time limit for one rsync."},
		def: DefaultSyncTimeout, check: checkPositiveDuration, set: func(c *Config, v any) { c.Sync.Timeout = dur(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.warnFiles", Env: "CRABBOX_SYNC_WARN_FILES", Kind: KindInt, Default: "50000",
			Usage: "Warn when a sync sends more files than this."},
		def: 50000, set: func(c *Config, v any) { c.Sync.WarnFiles = v.(int) },
	},
	{
		KeySpec: KeySpec{Key: "sync.warnBytes", Env: "CRABBOX_SYNC_WARN_BYTES", Kind: KindInt64, Default: "5368709120",
			Usage: "Warn when a sync sends more bytes than this (5 GiB)."},
		def: int64(5368709120), set: func(c *Config, v any) { c.Sync.WarnBytes = v.(int64) },
	},
	{
		KeySpec: KeySpec{Key: "sync.failFiles", Env: "CRABBOX_SYNC_FAIL_FILES", Kind: KindInt, Default: "150000",
			Usage: "Refuse a sync of more files than this unless sync.allowLarge."},
		def: 150000, set: func(c *Config, v any) { c.Sync.FailFiles = v.(int) },
	},
	{
		KeySpec: KeySpec{Key: "sync.failBytes", Env: "CRABBOX_SYNC_FAIL_BYTES", Kind: KindInt64, Default: "21474836480",
			Usage: "Refuse a sync of more bytes than this (20 GiB) unless sync.allowLarge."},
		def: int64(21474836480), set: func(c *Config, v any) { c.Sync.FailBytes = v.(int64) },
	},
	{
		KeySpec: KeySpec{Key: "sync.allowLarge", Env: "CRABBOX_SYNC_ALLOW_LARGE", Flag: "force-sync-large", FlagOn: runOnly, Kind: KindBool, Default: "false",
			Usage: "Allow syncs above the fail limits."},
		def: false, set: func(c *Config, v any) { c.Sync.AllowLarge = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.allowMassDeletions", Env: "CRABBOX_ALLOW_MASS_DELETIONS", Kind: KindBool, Default: "false",
			Usage: "Allow a sync that deletes 200 or more tracked files."},
		def: false, set: func(c *Config, v any) { c.Sync.AllowMassDeletions = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "sync.exclude", Kind: KindList,
			Usage: "Extra exclude patterns applied after the built-in ones (!pat re-includes)."},
		def: []string{}, check: checkPlainList, set: func(c *Config, v any) { c.Sync.Exclude = list(v) },
	},

	// env:
	{
		KeySpec: KeySpec{Key: "env.allow", Env: "CRABBOX_ENV_ALLOW", Kind: KindList, Default: "CI,NODE_OPTIONS",
			Usage: "Local env var names (or PREFIX*) forwarded to the remote command.", NeedsTrust: true},
		def: []string{"CI", "NODE_OPTIONS"}, check: checkEnvAllow, set: func(c *Config, v any) { c.Env.Allow = list(v) },
	},

	// artifacts:
	{
		KeySpec: KeySpec{Key: "artifacts.maxFiles", Env: "CRABBOX_ARTIFACTS_MAX_FILES", Kind: KindInt, Default: "1000",
			Usage: "Most files one run's --artifact-glob/--require-artifact fetch; matches past it are counted, not fetched."},
		def: 1000, check: checkPositiveInt, set: func(c *Config, v any) { c.Artifacts.MaxFiles = v.(int) },
	},
	{
		KeySpec: KeySpec{Key: "artifacts.maxBytes", Env: "CRABBOX_ARTIFACTS_MAX_BYTES", Kind: KindInt64, Default: "1073741824",
			Usage: "Most bytes one run's artifacts fetch (1 GiB); also the largest --download file."},
		def: int64(1 << 30), check: checkPositiveInt64, set: func(c *Config, v any) { c.Artifacts.MaxBytes = v.(int64) },
	},
	// run:
	{
		KeySpec: KeySpec{Key: "run.preflightTools", Env: "CRABBOX_PREFLIGHT_TOOLS", Flag: "preflight-tools", FlagOn: runOnly, Kind: KindList,
			Usage: "Programs whose versions run --preflight reports besides git and rsync (the flag implies --preflight)."},
		def: []string{}, check: checkToolNames, set: func(c *Config, v any) { c.Run.PreflightTools = list(v) },
	},
	{
		// A cost guard, not a trust boundary (D12): it runs, sends and
		// destroys nothing; --shards is still the user's own flag.
		KeySpec: KeySpec{Key: "run.maxShards", Env: "CRABBOX_MAX_SHARDS", Kind: KindInt, Default: "8",
			Usage: "Most workspaces run --shards and warmup --count use without --force."},
		def: DefaultMaxShards, check: checkPositiveInt, set: func(c *Config, v any) { c.Run.MaxShards = v.(int) },
	},

	// results:
	{
		KeySpec: KeySpec{Key: "results.junit", Env: "CRABBOX_RESULTS_JUNIT", Flag: "junit", FlagOn: runOnly, Kind: KindList,
			Usage: "JUnit XML paths (relative to the remote work dir) collected after a run."},
		def: []string{}, check: checkPlainList, set: func(c *Config, v any) { c.Results.JUnit = list(v) },
	},
	{
		KeySpec: KeySpec{Key: "results.auto", Env: "CRABBOX_RESULTS_AUTO", Flag: "results-auto", FlagOn: runOnly, Kind: KindBool, Default: "false",
			Usage: "Find fresh JUnit reports in the work dir after a run."},
		def: false, set: func(c *Config, v any) { c.Results.Auto = boolean(v) },
	},
	{
		KeySpec: KeySpec{Key: "results.failOnFailures", Env: "CRABBOX_RESULTS_FAIL_ON_FAILURES", Flag: "fail-on-test-failures", FlagOn: runOnly, Kind: KindBool, Default: "false",
			Usage: "Turn a 0 exit into 1 when JUnit reports failures or errors."},
		def: false, set: func(c *Config, v any) { c.Results.FailOnFailures = boolean(v) },
	},
}

var (
	keysByName = map[string]*keyDef{} // canonical keys and aliases
	keysByFlag = map[string]*keyDef{}
	keyGroups  = map[string]bool{} // dotted prefixes that hold mappings ("coder", "sync", ...)
)

func init() {
	sort.Slice(keyTable, func(i, j int) bool { return keyTable[i].Key < keyTable[j].Key })
	for _, d := range keyTable {
		for _, name := range append([]string{d.Key}, d.Aliases...) {
			if _, dup := keysByName[name]; dup {
				panic("config: duplicate key " + name)
			}
			keysByName[name] = d
			for i := range name {
				if name[i] == '.' {
					keyGroups[name[:i]] = true
				}
			}
		}
		if d.Flag != "" {
			if _, dup := keysByFlag[d.Flag]; dup {
				panic("config: duplicate flag " + d.Flag)
			}
			keysByFlag[d.Flag] = d
		}
	}
}

// Keys returns every configuration key, sorted by key.
func Keys() []KeySpec {
	out := make([]KeySpec, 0, len(keyTable))
	for _, d := range keyTable {
		ks := d.KeySpec
		ks.Aliases = append([]string(nil), d.Aliases...)
		ks.Values = append([]string(nil), d.Values...)
		out = append(out, ks)
	}
	return out
}

// FlagSpec describes one configuration flag for the CLI to register.
type FlagSpec struct {
	Name    string   // without "--"
	Key     string   // configuration key it sets
	Kind    string   // "bool", "list" (repeatable) or "string"
	On      []string // commands that take it (nil: all)
	Usage   string
	Default string // default shown in help
}

// FlagNames returns every configuration flag, sorted by name. The CLI passes
// the raw values of the flags the user set in LoadOptions.Flags; a bool flag
// given without a value is passed as "true".
func FlagNames() []FlagSpec {
	var out []FlagSpec
	for _, d := range keyTable {
		if d.Flag == "" {
			continue
		}
		kind := "string"
		switch d.Kind {
		case KindBool:
			kind = "bool"
		case KindList, KindHosts:
			kind = "list"
		}
		out = append(out, FlagSpec{Name: d.Flag, Key: d.Key, Kind: kind, On: d.FlagOn, Usage: d.Usage, Default: d.Default})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

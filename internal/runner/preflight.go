package runner

import (
	"context"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"time"

	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// preflightTimeout bounds the preflight round trip.
const preflightTimeout = 60 * time.Second

// preflight takes the machine snapshot of run --preflight in one round
// trip, prints it as notes and stores it in the run record. A failure
// only warns: the snapshot is diagnostic and never fails the run.
func (r *run) preflight(ctx context.Context, sess *sshx.Session, workdir string) {
	tools := remotecmd.PreflightTools(r.s.PreflightTools)
	start := r.d.Now()
	pctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	out, err := sess.Output(pctx, remotecmd.PreflightScript(workdir, tools))
	cancel()
	if ctx.Err() != nil {
		return
	}
	p := remotecmd.ParsePreflight(string(out))
	p.Ms = r.d.Now().Sub(start).Milliseconds()
	if err != nil {
		p.Error = execx.FirstLine(err.Error())
		r.notef("warning: preflight: %s (the run goes on)", runs.Escape(p.Error))
	}
	for _, line := range p.Summary(tools) {
		r.notef("preflight: %s", line)
	}
	r.timing["preflightMs"] = p.Ms
	r.update(func(rec *runs.Record) {
		rec.Preflight = &p
		rec.Phases = append(rec.Phases, runs.Phase{Name: "preflight", Ms: p.Ms, Error: p.Error})
	})
}

// Command crabbox runs a repository's command on a remote Coder workspace.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/crabbox-dev/crabbox/internal/cli"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.SystemFactory(iostreams.System()))
	stop()
	os.Exit(code)
}

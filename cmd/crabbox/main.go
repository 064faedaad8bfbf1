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
	// SIGHUP (the terminal closed) is an interrupt like Ctrl-C and
	// SIGTERM: the remote command is stopped and a fresh lease released.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Main(ctx, os.Args[1:], cli.SystemFactory(iostreams.System()))
	stop()
	os.Exit(code)
}

package sshx

import (
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Environment variables that turn the test binary into a ProxyCommand for
// the real-OpenSSH tests: it connects stdin/stdout to a TCP address, like
// `nc`, and appends a line to the log file each time it starts.
const (
	envProxyAddr = "CRABBOX_SSHX_TEST_PROXY"
	envProxyLog  = "CRABBOX_SSHX_TEST_PROXY_LOG"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(envProxyAddr); addr != "" {
		os.Exit(runTestProxy(addr, os.Getenv(envProxyLog)))
	}
	os.Exit(m.Run())
}

func runTestProxy(addr, logFile string) int {
	if logFile != "" {
		if f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
			fmt.Fprintf(f, "proxy started pid=%d\n", os.Getpid())
			f.Close()
		}
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test proxy:", err)
		return 1
	}
	go func() {
		io.Copy(conn, os.Stdin)
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, conn) // until the server closes
	return 0
}

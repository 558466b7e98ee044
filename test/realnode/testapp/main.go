// Command testapp is the container the real-node tests run: a small static
// HTTP server whose behaviour a test steers through its environment and its
// endpoints. It logs a line at start and per request, answers /healthz and
// /readyz, exits with a chosen code, crashes on request, handles SIGTERM, and
// calls the Kubernetes API with its mounted ServiceAccount token.
//
// Environment:
//
//	TESTAPP_PORT        port to serve HTTP on (default 8080)
//	TESTAPP_EXIT_CODE   exit with this code TESTAPP_EXIT_AFTER after start
//	TESTAPP_EXIT_AFTER  duration before that exit (default 0)
//	TESTAPP_TERM_GRACE  how long to keep serving after SIGTERM before exiting 0 (default 0)
//	TESTAPP_API_PATH    an API path to GET once at start, e.g. /api/v1/namespaces/default/pods
//	TESTAPP_ALLOC_MIB   allocate and touch this many MiB at start (to be OOMKilled under a limit)
//	TESTAPP_STDIN       "echo": log each line of stdin as "testapp: stdin: LINE" (for kubectl attach)
//
// Endpoints: /healthz, /readyz (503 once terminating), /exit?code=N,
// /crash (panics: exit code 2), /api?path=P (GET P from the API server);
// any other path answers "testapp on HOSTNAME" (the pod's name).
//
// The image has no shell, so the binary is also its own exec helper:
// 'testapp exit N' exits with N, 'testapp api PATH' GETs PATH from the API
// server (exit 1 unless the answer is 2xx), 'testapp dial HOST:PORT' opens
// a TCP connection (exit 1 if it cannot), 'testapp get URL COUNT' GETs URL
// COUNT times, each on a new connection (so that a Service picks an
// endpoint each time), and prints each answer's body or error (exit 1 if
// one failed), 'testapp echo ARGS' prints ARGS,
// 'testapp cat FILES' prints files, 'testapp env NAMES' prints NAME=value
// lines and 'testapp tty' says whether stdin and stdout are terminals.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// logBodyLimit bounds what a log line shows of an API answer; the exec
// helper prints up to 1 MiB.
const logBodyLimit = 4096

// serviceAccountDir is where the kubelet mounts a pod's ServiceAccount token.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) > 1 {
		os.Exit(helper(os.Args[1], os.Args[2:]))
	}
	if err := serve(); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

// helper runs the exec helpers; it returns the exit code.
func helper(name string, args []string) int {
	switch name {
	case "exit":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: testapp exit CODE")
			return 64
		}
		code, err := strconv.Atoi(args[0])
		if err != nil || code < 0 || code > 255 {
			fmt.Fprintf(os.Stderr, "testapp exit: %q is not an exit code (0-255)\n", args[0])
			return 64
		}
		return code
	case "api":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: testapp api PATH")
			return 64
		}
		out, ok := callAPI(args[0], 1<<20)
		fmt.Println(out)
		if !ok {
			return 1
		}
		return 0
	case "dial":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: testapp dial HOST:PORT")
			return 64
		}
		conn, err := net.DialTimeout("tcp", args[0], 3*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		conn.Close()
		fmt.Println("dial: connected to", args[0])
		return 0
	case "get":
		count := 0
		if len(args) == 2 {
			count, _ = strconv.Atoi(args[1])
		}
		if count < 1 {
			fmt.Fprintln(os.Stderr, "usage: testapp get URL COUNT (COUNT ≥ 1)")
			return 64
		}
		return get(args[0], count)
	case "echo":
		fmt.Println(strings.Join(args, " "))
		return 0
	case "env":
		for _, name := range args {
			fmt.Printf("%s=%s\n", name, os.Getenv(name))
		}
		return 0
	case "tty":
		fmt.Printf("stdin terminal: %t, stdout terminal: %t\n", isTerminal(os.Stdin), isTerminal(os.Stdout))
		return 0
	case "cat":
		code := 0
		for _, f := range args {
			data, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "testapp cat:", err)
				code = 1
				continue
			}
			os.Stdout.Write(data)
		}
		return code
	default:
		fmt.Fprintf(os.Stderr, "testapp: unknown helper %q: use exit, api, dial, get, echo, cat, env or tty (or no argument to serve)\n", name)
		return 64
	}
}

// get GETs url count times, each on a new connection, and prints one line
// per answer: its body, or "get: error: ..."; it returns 1 if one failed.
func get(url string, count int) int {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	code := 0
	for range count {
		resp, err := c.Get(url)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(io.LimitReader(resp.Body, logBodyLimit))
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			if err == nil {
				fmt.Println(strings.TrimSpace(string(body)))
				continue
			}
		}
		fmt.Println("get: error:", err)
		code = 1
	}
	return code
}

func logf(format string, args ...any) {
	fmt.Printf("testapp: "+format+"\n", args...)
}

func durationEnv(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a duration (e.g. 5s): %w", name, v, err)
	}
	return d, nil
}

func serve() error {
	port := os.Getenv("TESTAPP_PORT")
	if port == "" {
		port = "8080"
	}
	grace, err := durationEnv("TESTAPP_TERM_GRACE")
	if err != nil {
		return err
	}
	exitAfter, err := durationEnv("TESTAPP_EXIT_AFTER")
	if err != nil {
		return err
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	logf("started on %s as %s (pid %d, uid %d)", l.Addr(), hostname, os.Getpid(), os.Getuid())
	if v := os.Getenv("TESTAPP_ALLOC_MIB"); v != "" {
		mib, err := strconv.Atoi(v)
		if err != nil || mib < 0 {
			return fmt.Errorf("TESTAPP_ALLOC_MIB=%q is not a number of MiB", v)
		}
		logf("allocating %d MiB", mib)
		allocated = make([]byte, mib<<20)
		// Touch every page: untouched pages are not charged to the cgroup.
		for i := 0; i < len(allocated); i += 4096 {
			allocated[i] = 1
		}
		logf("allocated %d MiB", mib)
	}

	var terminating atomic.Bool
	srv := &http.Server{Handler: handler(hostname, &terminating), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("error: serving: %v", err)
			os.Exit(1)
		}
	}()

	switch v := os.Getenv("TESTAPP_STDIN"); v {
	case "":
	case "echo":
		go func() {
			lines := bufio.NewScanner(os.Stdin)
			for lines.Scan() {
				logf("stdin: %s", lines.Text())
			}
			logf("stdin closed")
		}()
	default:
		return fmt.Errorf("TESTAPP_STDIN=%q: the only mode is echo", v)
	}
	if path := os.Getenv("TESTAPP_API_PATH"); path != "" {
		go func() {
			out, _ := callAPI(path, logBodyLimit)
			logf("%s", out)
		}()
	}
	if v := os.Getenv("TESTAPP_EXIT_CODE"); v != "" {
		code, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("TESTAPP_EXIT_CODE=%q is not a number", v)
		}
		go func() {
			time.Sleep(exitAfter)
			logf("exiting with code %d as TESTAPP_EXIT_CODE asks", code)
			os.Exit(code)
		}()
	}

	sig := <-signals
	terminating.Store(true)
	logf("received %s, exiting 0 in %s", signalName(sig), grace)
	time.Sleep(grace)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	logf("exiting 0 after %s", signalName(sig))
	return nil
}

// allocated holds what TESTAPP_ALLOC_MIB asked for, so that it stays
// charged.
var allocated []byte

// isTerminal reports whether f is a terminal: TCGETS succeeds only on one.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

func handler(hostname string, terminating *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if terminating.Load() {
			http.Error(w, "terminating", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil || code < 0 || code > 255 {
			http.Error(w, "code must be 0-255, e.g. /exit?code=3", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with code %d\n", code)
		w.(http.Flusher).Flush()
		logf("exiting with code %d as /exit asks", code)
		go func() { time.Sleep(100 * time.Millisecond); os.Exit(code) }()
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "crashing")
		w.(http.Flusher).Flush()
		logf("crashing as /crash asks")
		go func() { time.Sleep(100 * time.Millisecond); panic("testapp: crash requested through /crash") }()
	})
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		out, _ := callAPI(r.URL.Query().Get("path"), logBodyLimit)
		logf("%s", out)
		fmt.Fprintln(w, out)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "testapp on %s\n", hostname)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logf("request %s %s from %s", r.Method, r.URL.RequestURI(), r.RemoteAddr)
		mux.ServeHTTP(w, r)
	})
}

// callAPI GETs path from the API server with the pod's ServiceAccount token,
// as in-cluster clients do, and describes the answer in one line:
// "api: GET PATH: 200 OK: BODY" or "api: GET PATH: error: ...", and whether
// the answer was a success; BODY is cut at bodyLimit bytes.
func callAPI(path string, bodyLimit int64) (string, bool) {
	prefix := "api: GET " + path + ": "
	if !strings.HasPrefix(path, "/") {
		return prefix + "error: the path must start with /, e.g. /api/v1/namespaces/default/pods", false
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return prefix + "error: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is not set: not running in a pod", false
	}
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return prefix + "error: " + err.Error(), false
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return prefix + "error: " + err.Error(), false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return prefix + "error: no certificate in " + serviceAccountDir + "/ca.crt", false
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+net.JoinHostPort(host, port)+path, nil)
	if err != nil {
		return prefix + "error: " + err.Error(), false
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return prefix + "error: " + err.Error(), false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	return prefix + resp.Status + ": " + strings.Join(strings.Fields(string(body)), " "), resp.StatusCode/100 == 2
}

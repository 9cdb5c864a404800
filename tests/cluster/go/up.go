package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// serviceIP is the first address of the service range: the "kubernetes" Service's cluster IP.
const serviceIP = "10.96.0.1"

// controllers are the kube-controller-manager controllers the test bed runs: enough for namespaces,
// service accounts and their tokens, garbage collection and Deployments/ReplicaSets/Jobs.
var controllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"job-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"clusterrole-aggregation-controller",
	"service-cidr-controller",
	"ttl-after-finished-controller",
}

// child is one component process started by `up`.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// upConfig holds the flags of `up`.
type upConfig struct {
	dir          string
	apiPort      int
	etcdPort     int
	etcdPeerPort int
	kcmPort      int
	timeout      time.Duration
	verbosity    int
	noKCM        bool
}

func runUp(args []string) int {
	flags := flag.NewFlagSet("up", flag.ContinueOnError)
	var cfg upConfig
	flags.StringVar(&cfg.dir, "dir", "", "state directory (certificates, etcd data, logs, kubeconfig)")
	flags.IntVar(&cfg.apiPort, "port", 0, "kube-apiserver secure port on 127.0.0.1 (0: pick a free one)")
	flags.IntVar(&cfg.etcdPort, "etcd-port", 0, "etcd client port (0: pick a free one)")
	flags.IntVar(&cfg.etcdPeerPort, "etcd-peer-port", 0, "etcd peer port (0: pick a free one)")
	flags.IntVar(&cfg.kcmPort, "controller-manager-port", 0, "kube-controller-manager secure port (0: free)")
	flags.DurationVar(&cfg.timeout, "timeout", 3*time.Minute, "how long to wait for readiness")
	flags.IntVar(&cfg.verbosity, "v", 1, "log verbosity of the components")
	flags.BoolVar(&cfg.noKCM, "no-controller-manager", false, "do not run kube-controller-manager")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if cfg.dir == "" {
		fmt.Fprintln(os.Stderr, "up: --dir is required")
		return 2
	}
	if err := up(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "up: %v\n", err)
		return 1
	}
	return 0
}

func up(cfg upConfig) error {
	dir, err := filepath.Abs(cfg.dir)
	if err != nil {
		return err
	}
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	for _, port := range []*int{&cfg.apiPort, &cfg.etcdPort, &cfg.etcdPeerPort, &cfg.kcmPort} {
		if *port == 0 {
			if *port, err = freePort(); err != nil {
				return err
			}
		}
	}
	keys := pki{dir: filepath.Join(dir, "pki")}
	admin := identity{file: "admin", user: "streamjob-admin", groups: []string{"system:masters"}}
	kcm := identity{file: "controller-manager", user: "system:kube-controller-manager"}
	if err := keys.generate([]identity{admin, kcm}); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	token, err := adminToken(keys)
	if err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", cfg.apiPort)
	kcmKubeconfig := filepath.Join(dir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, server, keys, kcm.file); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	var running []*child
	stopAll := func() {
		for i := len(running) - 1; i >= 0; i-- {
			stopChild(running[i], 20*time.Second)
		}
	}
	start := func(name string, args ...string) (*child, error) {
		c, err := startChild(self, logDir, name, args)
		if err != nil {
			return nil, err
		}
		running = append(running, c)
		return c, nil
	}
	// waitFor polls ready() until it succeeds, a child dies, a signal arrives or time runs out.
	waitFor := func(what string, ready func() error) error {
		deadline := time.Now().Add(cfg.timeout)
		var last error
		for time.Now().Before(deadline) {
			if last = ready(); last == nil {
				return nil
			}
			for _, c := range running {
				select {
				case err := <-c.done:
					c.done <- err
					return fmt.Errorf("%s exited while waiting for %s: %v (log: %s)", c.name, what, err,
						filepath.Join(logDir, c.name+".log"))
				default:
				}
			}
			select {
			case sig := <-signals:
				return fmt.Errorf("%v while waiting for %s", sig, what)
			case <-time.After(250 * time.Millisecond):
			}
		}
		return fmt.Errorf("%s not ready after %s: %v", what, cfg.timeout, last)
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", cfg.etcdPort)
	if _, err := start("etcd", "--data-dir", filepath.Join(dir, "etcd"),
		"--client-port", fmt.Sprint(cfg.etcdPort), "--peer-port", fmt.Sprint(cfg.etcdPeerPort)); err != nil {
		stopAll()
		return err
	}
	if err := waitFor("etcd", func() error { return httpOK(http.DefaultClient, etcdURL+"/health") }); err != nil {
		stopAll()
		return err
	}
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cfg.apiPort),
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + keys.path("apiserver.crt"),
		"--tls-private-key-file=" + keys.path("apiserver.key"),
		"--client-ca-file=" + keys.path("ca.crt"),
		"--token-auth-file=" + keys.path("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + keys.path("sa.pub"),
		"--service-account-signing-key-file=" + keys.path("sa.key"),
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--event-ttl=30m",
		fmt.Sprintf("--v=%d", cfg.verbosity),
	}
	if _, err := start("kube-apiserver", apiArgs...); err != nil {
		stopAll()
		return err
	}
	adminClient, err := tlsClient(keys, admin.file)
	if err != nil {
		stopAll()
		return err
	}
	if err := waitFor("kube-apiserver", func() error { return httpOK(adminClient, server+"/readyz") }); err != nil {
		stopAll()
		return err
	}
	if !cfg.noKCM {
		kcmArgs := []string{
			"--kubeconfig=" + kcmKubeconfig,
			"--authentication-kubeconfig=" + kcmKubeconfig,
			"--authorization-kubeconfig=" + kcmKubeconfig,
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", cfg.kcmPort),
			"--cert-dir=" + filepath.Join(dir, "controller-manager-certs"),
			"--controllers=" + strings.Join(controllers, ","),
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + keys.path("sa.key"),
			"--root-ca-file=" + keys.path("ca.crt"),
			"--cluster-signing-cert-file=" + keys.path("ca.crt"),
			"--cluster-signing-key-file=" + keys.path("ca.key"),
			"--leader-elect=false",
			"--profiling=false",
			fmt.Sprintf("--v=%d", cfg.verbosity),
		}
		if _, err := start("kube-controller-manager", kcmArgs...); err != nil {
			stopAll()
			return err
		}
		insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed, loopback only
		kcmURL := fmt.Sprintf("https://127.0.0.1:%d/healthz", cfg.kcmPort)
		if err := waitFor("kube-controller-manager", func() error { return httpOK(insecure, kcmURL) }); err != nil {
			stopAll()
			return err
		}
	}
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, keys, admin.file); err != nil {
		stopAll()
		return err
	}
	state := map[string]any{
		"server": server, "kubeconfig": kubeconfig, "token": token, "etcd": etcdURL,
		"apiserverPort": cfg.apiPort, "controllerManagerPort": cfg.kcmPort, "pid": os.Getpid(),
		"logs": logDir, "caFile": keys.path("ca.crt"),
	}
	if err := writeJSON(filepath.Join(dir, "state.json"), state); err != nil {
		stopAll()
		return err
	}
	fmt.Fprintf(os.Stderr, "up: ready, kubeconfig %s\n", kubeconfig)

	var exitErr error
	select {
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "up: %v, stopping\n", sig)
	case exitErr = <-anyDone(running):
	}
	stopAll()
	_ = os.Remove(filepath.Join(dir, "state.json"))
	return exitErr
}

// anyDone reports the first child that exits.
func anyDone(children []*child) <-chan error {
	out := make(chan error, len(children))
	for _, c := range children {
		go func(c *child) {
			err := <-c.done
			c.done <- err
			out <- fmt.Errorf("%s exited unexpectedly: %v", c.name, err)
		}(c)
	}
	return out
}

func startChild(self, logDir, name string, args []string) (*child, error) {
	logFile, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The component dies with us even if `up` is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		if err == nil {
			err = errors.New("exit status 0")
		}
		c.done <- err
	}()
	return c, nil
}

// stopChild sends SIGTERM, waits up to grace, then SIGKILLs.
func stopChild(c *child, grace time.Duration) {
	select {
	case err := <-c.done:
		c.done <- err
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		err := <-c.done
		c.done <- err
	}
}

func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

func httpOK(client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func tlsClient(keys pki, clientName string) (*http.Client, error) {
	caPEM, err := os.ReadFile(keys.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(keys.path(clientName+".crt"), keys.path(clientName+".key"))
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	return &http.Client{Timeout: 5 * time.Second, Transport: transport}, nil
}

// adminToken returns the static bearer token of the admin identity, creating the token file once.
func adminToken(keys pki) (string, error) {
	path := keys.path("tokens.csv")
	if data, err := os.ReadFile(path); err == nil {
		return strings.SplitN(string(data), ",", 2)[0], nil
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	line := fmt.Sprintf("%s,streamjob-admin,streamjob-admin,\"system:masters\"\n", token)
	return token, os.WriteFile(path, []byte(line), 0o600)
}

func writeKubeconfig(path, server string, keys pki, clientName string) error {
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: testbed
  context:
    cluster: testbed
    user: %s
current-context: testbed
`, server, keys.path("ca.crt"), clientName, keys.path(clientName+".crt"), keys.path(clientName+".key"), clientName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeJSON(path string, value any) error {
	data, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

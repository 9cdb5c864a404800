package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// runAPIServer runs the upstream kube-apiserver command with the given flags.
func runAPIServer(args []string) int {
	command := apiserver.NewAPIServerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}

// runControllerManager runs the upstream kube-controller-manager command with the given flags.
func runControllerManager(args []string) int {
	command := controllermanager.NewControllerManagerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}

// runEtcd runs a single-member embedded etcd on 127.0.0.1 until SIGTERM or SIGINT.
func runEtcd(args []string) int {
	flags := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := flags.String("data-dir", "", "etcd data directory")
	clientPort := flags.Int("client-port", 2379, "client port on 127.0.0.1")
	peerPort := flags.Int("peer-port", 2380, "peer port on 127.0.0.1")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		return 2
	}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *peerPort)}
	cfg := embed.NewConfig()
	cfg.Name = "testbed"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	// A test bed does not need durability across power loss; this keeps etcd fast on slow disks.
	cfg.UnsafeNoFsync = true
	server, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		return 1
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd: ready on %s\n", clientURL.String())
	case <-time.After(60 * time.Second):
		server.Server.Stop()
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		return 1
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "etcd: %v, stopping\n", sig)
		return 0
	case err := <-server.Err():
		if err == nil {
			err = errors.New("stopped")
		}
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	}
}

// versionString names the module versions this binary was built from.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	out := ""
	for _, dep := range info.Deps {
		switch dep.Path {
		case "k8s.io/kubernetes", "go.etcd.io/etcd/server/v3", "k8s.io/apiserver":
			out += fmt.Sprintf("%s %s\n", dep.Path, dep.Version)
		}
	}
	return out
}

// Command testbed is the control plane of streamjob's e2e test bed: one multi-call binary whose
// sub-commands run etcd, kube-apiserver and kube-controller-manager, each in its own process so
// that the components' global flags and metrics registries never collide.
//
// Called by tests/cluster/controlplane.py (the pytest fixtures) as `testbed up --dir DIR`, which
// generates certificates, starts the three components as child processes of itself, waits until
// the API server is ready, writes DIR/admin.kubeconfig and stops everything on SIGTERM.
package main

import (
	"fmt"
	"os"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage: testbed COMMAND [flags]

commands:
  up                  generate certificates, run etcd + kube-apiserver + kube-controller-manager, write a kubeconfig
  etcd                run an embedded etcd server
  kube-apiserver      run kube-apiserver (flags as upstream)
  kube-controller-manager
                      run kube-controller-manager (flags as upstream)
  version             print the pinned component versions`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	command, args := os.Args[1], os.Args[2:]
	var code int
	switch command {
	case "up":
		code = runUp(args)
	case "etcd":
		code = runEtcd(args)
	case "kube-apiserver":
		code = runAPIServer(args)
	case "kube-controller-manager":
		code = runControllerManager(args)
	case "version":
		fmt.Println(versionString())
	default:
		usage()
		code = 2
	}
	os.Exit(code)
}

// Command nodebed is the node side of streamjob's real-container test tier: one multi-call binary
// running the upstream kubelet, kube-proxy and kube-scheduler, built from the same Kubernetes module
// pins as the control plane in tests/cluster/go.
//
// Called by tests/containers/nodes.py as `nodebed kubelet ...`, `nodebed kube-proxy ...` and
// `nodebed kube-scheduler ...` (flags as upstream); built by tests/containers/build.sh, which sets
// the reported version with -X ldflags.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/component-base/version"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nodebed kubelet|kube-proxy|kube-scheduler|version [flags]")
		os.Exit(2)
	}
	command, args := os.Args[1], os.Args[2:]
	switch command {
	case "kubelet":
		cmd := kubelet.NewKubeletCommand(context.Background())
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-proxy":
		cmd := proxy.NewProxyCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "version":
		fmt.Println(version.Get().GitVersion)
	default:
		fmt.Fprintf(os.Stderr, "nodebed: unknown command %q\n", command)
		os.Exit(2)
	}
}

// One binary for the two Argo CD components the tests run, chosen as Argo CD's own
// image chooses: by program name (argocd-application-controller, argocd-repo-server) or
// ARGOCD_BINARY_NAME (argocd-git-ask-pass too, as git calls it); or, when called as `argocd`, by its first argument
// (`argocd application-controller ...`, `argocd repo-server ...`).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	// As argo-cd's cmd/main.go: klog follows the configured log level and format.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	// argo-cd's cmd/main.go calls grpc.DisableSRVLookups() here, which panics unless
	// gRPC's SRV lookups are on: grpclb's init turns them on, and only commands this
	// binary leaves out import it. Off already, they need no workaround.
	name := filepath.Base(os.Args[0])
	if v := os.Getenv("ARGOCD_BINARY_NAME"); v != "" {
		name = v
	}
	args := os.Args[1:]
	if name == "argocd" && len(args) > 0 {
		name, args = "argocd-"+args[0], args[1:]
	}
	var command *cobra.Command
	switch name {
	case "argocd-application-controller":
		command = appcontroller.NewCommand()
	case "argocd-repo-server":
		command = reposerver.NewCommand()
	case "argocd-git-ask-pass":
		// The repo server runs git with GIT_ASKPASS=argocd and this name in
		// ARGOCD_BINARY_NAME when a repository has credentials.
		command = gitaskpass.NewCommand()
	default:
		fmt.Fprintln(os.Stderr, "usage: argocd application-controller|repo-server [flags]")
		os.Exit(2)
	}
	command.SetArgs(args)
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}

module flowstop.dev/testkit/gitops/gitserver

go 1.26.0

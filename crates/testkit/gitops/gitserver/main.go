// gitserver serves the git repositories under a directory over smart HTTP on loopback, as
// a forge does, by running `git http-backend` through CGI: clone, fetch and push, without
// authentication. go-git (Argo CD's repo server uses git itself, Flux's source-controller
// go-git) speaks only the smart protocol, so a plain file server would not do.
//
// Usage: gitserver ROOT [ADDR]. It prints the address it listens on (a free port when
// ADDR is 127.0.0.1:0, the default) as its first line, then serves until killed:
// http://ADDR/NAME.git is ROOT/NAME.git.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: gitserver ROOT [ADDR]")
		os.Exit(2)
	}
	root, err := filepath.Abs(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	addr := "127.0.0.1:0"
	if len(os.Args) == 3 {
		addr = os.Args[2]
	}
	git, err := exec.LookPath("git")
	if err != nil {
		log.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + root,
			// Anonymous pushes: receive-pack is refused by default without REMOTE_USER.
			"GIT_CONFIG_COUNT=2",
			"GIT_CONFIG_KEY_0=http.receivepack",
			"GIT_CONFIG_VALUE_0=true",
			"GIT_CONFIG_KEY_1=safe.directory",
			"GIT_CONFIG_VALUE_1=*",
		},
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s", r.Method, r.URL)
		backend.ServeHTTP(w, r)
	})))
}

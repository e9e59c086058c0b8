// promql reads PromQL expressions, one per line on stdin, parses each with Prometheus's own
// parser (the one promtool and the server use) and prints, for each, the metric names its
// selectors read, space-separated, or "error: <message>" when it does not parse. The
// dashboard test uses it to check every panel's query against a live /metrics.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	p := parser.NewParser(parser.Options{})
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		expr, err := p.ParseExpr(line)
		if err != nil {
			fmt.Printf("error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		names := map[string]bool{}
		for _, sel := range parser.ExtractSelectors(expr) {
			for _, m := range sel {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					names[m.Value] = true
				}
			}
		}
		out := make([]string, 0, len(names))
		for n := range names {
			out = append(out, n)
		}
		sort.Strings(out)
		fmt.Println(strings.Join(out, " "))
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

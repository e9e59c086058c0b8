// health judges flowstop objects the way GitOps tools do: with kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what Flux and kpt use) and with an
// Argo CD resource-customization health.lua run by gopher-lua, the interpreter Argo CD
// embeds. Used by the tests; see ../build.sh.
//
//	health kstatus < object.yaml          prints {"status": …, "message": …}
//	health lua SCRIPT < object.yaml       prints {"status": …, "message": …}
//	health lua-tests DIR                  runs DIR/health_test.yaml (Argo CD's layout)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: health kstatus | lua SCRIPT | lua-tests DIR")
	}
	switch os.Args[1] {
	case "kstatus":
		obj := readObject(os.Stdin)
		r, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fail("kstatus: %v", err)
		}
		emit(verdict{Status: r.Status.String(), Message: r.Message})
	case "lua":
		emit(runLua(mustRead(os.Args[2]), readObject(os.Stdin)))
	case "lua-tests":
		luaTests(os.Args[2])
	default:
		fail("unknown command %q", os.Args[1])
	}
}

// runLua evaluates a health script with the object as the global `obj`, as Argo CD does.
func runLua(script string, obj map[string]interface{}) verdict {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// The libraries Argo CD opens for health scripts.
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		l.Push(l.NewFunction(lib.fn))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		fail("lua: %v", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		fail("lua: the script returned %s, not a table", l.Get(-1).Type())
	}
	return verdict{Status: ret.RawGetString("status").String(), Message: ret.RawGetString("message").String()}
}

func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case map[string]interface{}:
		t := l.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(l, e))
		}
		return t
	case []interface{}:
		t := l.NewTable()
		for _, e := range x {
			t.Append(toLua(l, e))
		}
		return t
	default:
		fail("lua: cannot convert %T", v)
		return lua.LNil
	}
}

// luaTests runs Argo CD's health_test.yaml of a resource customization directory.
func luaTests(dir string) {
	var spec struct {
		Tests []struct {
			HealthStatus verdict `json:"healthStatus"`
			InputPath    string  `json:"inputPath"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(filepath.Join(dir, "health_test.yaml"))), &spec); err != nil {
		fail("health_test.yaml: %v", err)
	}
	if len(spec.Tests) == 0 {
		fail("health_test.yaml has no tests")
	}
	script := mustRead(filepath.Join(dir, "health.lua"))
	bad := 0
	for _, t := range spec.Tests {
		f, err := os.Open(filepath.Join(dir, t.InputPath))
		if err != nil {
			fail("%v", err)
		}
		got := runLua(script, readObject(f))
		f.Close()
		if got != t.HealthStatus {
			bad++
			fmt.Printf("FAIL %s: got %+v, want %+v\n", t.InputPath, got, t.HealthStatus)
		} else {
			fmt.Printf("ok   %s: %s\n", t.InputPath, got.Status)
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
}

func readObject(r io.Reader) map[string]interface{} {
	b, err := io.ReadAll(r)
	if err != nil {
		fail("reading the object: %v", err)
	}
	// Through Unstructured's own JSON decoding: integers stay int64, as kstatus expects.
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		fail("the object: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		fail("the object: %v", err)
	}
	return u.Object
}

func mustRead(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	return string(b)
}

func emit(v verdict) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "health: "+format+"\n", args...)
	os.Exit(2)
}

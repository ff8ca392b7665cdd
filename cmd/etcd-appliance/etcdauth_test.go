package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestTemplateRefusesEtcdAuthWithoutTLS: EtcdAuth true with Tls off would
// start appliances that refuse their configuration (--etcd-auth needs
// TLS) and a stack that waits out its creation timeout; a rule of the
// template refuses the parameters instead.
func TestTemplateRefusesEtcdAuthWithoutTLS(t *testing.T) {
	tmpl := readTemplate(t)
	params, _ := tmpl["Parameters"].(map[any]any)
	p, _ := params["EtcdAuth"].(map[any]any)
	if p == nil || fmt.Sprint(p["Default"]) != "false" {
		t.Fatalf("parameter EtcdAuth = %v, want one defaulting to false", p)
	}
	rules, _ := tmpl["Rules"].(map[any]any)
	rule, _ := rules["EtcdAuthNeedsTls"].(map[any]any)
	cond, asserts := fmt.Sprint(rule["RuleCondition"]), fmt.Sprint(rule["Assertions"])
	if !strings.Contains(cond, "EtcdAuth") || !strings.Contains(cond, "true") ||
		!strings.Contains(asserts, "Assert:[Tls auto]") {
		t.Errorf("rule EtcdAuthNeedsTls: condition %s, assertions %s; want EtcdAuth true to assert Tls auto", cond, asserts)
	}
}

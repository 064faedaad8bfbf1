package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileEntry is one known key found in a config file.
type fileEntry struct {
	def  *keyDef
	name string // the key as written (may be an alias)
	raw  *yaml.Node
}

// parseYAML flattens a config file into known keys. Unknown keys become
// warnings. When a key and its alias are both set, the canonical key wins.
func parseYAML(data []byte) ([]fileEntry, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil, nil // empty file
	}
	root := resolveAlias(doc.Content[0])
	if isNull(root) {
		return nil, nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("top level must be a mapping of keys")
	}
	p := &yamlParser{found: map[string]int{}}
	if err := p.walk(root, ""); err != nil {
		return nil, nil, err
	}
	return p.entries, p.warnings, nil
}

type yamlParser struct {
	entries  []fileEntry
	found    map[string]int // canonical key -> index in entries
	warnings []string
}

func (p *yamlParser) walk(m *yaml.Node, prefix string) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolveAlias(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: keys must be strings", k.Line)
		}
		name := prefix + k.Value
		if d := keysByName[name]; d != nil {
			if isNull(v) {
				continue // "key:" with no value leaves the key unset
			}
			if j, seen := p.found[d.Key]; seen {
				prev := p.entries[j]
				if prev.name == name {
					return fmt.Errorf("line %d: key %q is set twice", k.Line, name)
				}
				p.warnings = append(p.warnings, fmt.Sprintf("both %s and %s are set; using %s", prev.name, name, d.Key))
				if name == d.Key {
					p.entries[j] = fileEntry{def: d, name: name, raw: v}
				}
				continue
			}
			p.found[d.Key] = len(p.entries)
			p.entries = append(p.entries, fileEntry{def: d, name: name, raw: v})
			continue
		}
		if keyGroups[name] {
			switch {
			case isNull(v):
			case v.Kind == yaml.MappingNode:
				if err := p.walk(v, name+"."); err != nil {
					return err
				}
			default:
				return fmt.Errorf("line %d: %s must be a mapping", k.Line, name)
			}
			continue
		}
		p.warnings = append(p.warnings, fmt.Sprintf("unknown key %q (ignored)", name))
	}
	return nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// parseFileValue turns a YAML node into a typed value for d (before check).
func parseFileValue(d *keyDef, n *yaml.Node) (any, error) {
	if d.Kind == KindHosts {
		return parseSSHHostsNode(n)
	}
	if d.Kind == KindList {
		switch n.Kind {
		case yaml.SequenceNode:
			out := []string{}
			for _, e := range n.Content {
				e = resolveAlias(e)
				if e.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("must be a list of strings")
				}
				if strings.ContainsRune(e.Value, 0) {
					return nil, fmt.Errorf("must not contain a NUL byte (got %q)", e.Value)
				}
				s := strings.TrimSpace(e.Value)
				if isNull(e) {
					s = ""
				}
				if s == "" && !d.keepEmpty {
					continue
				}
				out = append(out, s)
			}
			return out, nil
		case yaml.ScalarNode:
			return splitList(n.Value), nil
		}
		return nil, fmt.Errorf("must be a list or a comma-separated string")
	}
	if n.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("must be a single value, not a %s", nodeKindName(n))
	}
	if d.Kind == KindBool {
		b, ok := parseEnvBool(n.Value)
		if !ok {
			return nil, fmt.Errorf("must be true or false (got %q)", n.Value)
		}
		return b, nil
	}
	return parseText(d, n.Value, n.Tag == "!!int")
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

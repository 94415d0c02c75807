package vim

import (
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
)

// xsiNS is the XML Schema instance namespace, whose type attribute names a
// value's derived type ("VirtualDisk" for a VirtualDevice).
const xsiNS = "http://www.w3.org/2001/XMLSchema-instance"

// Node is an element of an answer, as read: vSphere's answers are
// polymorphic (a device is a VirtualDisk or a VirtualVmxnet3, said by
// xsi:type), and reading them as a tree lets the caller look only at what
// it uses, without a registry of every type the API has. Its methods are
// nil-safe: a missing element reads as empty.
type Node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Kids    []*Node    `xml:",any"`
}

// Child is the first child element named name, or nil.
func (n *Node) Child(name string) *Node {
	if n == nil {
		return nil
	}
	for _, k := range n.Kids {
		if k.XMLName.Local == name {
			return k
		}
	}
	return nil
}

// Children are the child elements named name, in order.
func (n *Node) Children(name string) []*Node {
	if n == nil {
		return nil
	}
	var out []*Node
	for _, k := range n.Kids {
		if k.XMLName.Local == name {
			out = append(out, k)
		}
	}
	return out
}

// Path follows child names down the tree.
func (n *Node) Path(names ...string) *Node {
	for _, name := range names {
		n = n.Child(name)
	}
	return n
}

// String is the element's text.
func (n *Node) String() string {
	if n == nil {
		return ""
	}
	return n.Text
}

// Int is the element's text as an integer (0 when absent or not one).
func (n *Node) Int() int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(n.String()), 10, 64)
	return v
}

// Bool is the element's text as a boolean (false when absent).
func (n *Node) Bool() bool {
	v, _ := strconv.ParseBool(strings.TrimSpace(n.String()))
	return v
}

// Has reports whether the element is present.
func (n *Node) Has() bool { return n != nil }

// Type is the element's xsi:type without its namespace prefix: the
// derived type of its value ("VirtualDisk"), or "".
func (n *Node) Type() string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attrs {
		if a.Name.Local == "type" && (a.Name.Space == xsiNS || a.Name.Space == "xsi") {
			_, t, ok := strings.Cut(a.Value, ":")
			if !ok {
				return a.Value
			}
			return t
		}
	}
	return ""
}

// Ref reads the element as a managed object reference
// (<parent type="Folder">group-v3</parent>).
func (n *Node) Ref() Ref {
	if n == nil {
		return Ref{}
	}
	r := Ref{Value: strings.TrimSpace(n.Text)}
	for _, a := range n.Attrs {
		if a.Name.Local == "type" && a.Name.Space == "" {
			r.Type = a.Value
		}
	}
	return r
}

// readBody reads a SOAP envelope's Body as a tree, token by token: the
// same tree xml.Unmarshal builds into a Node, without its reflection, which
// cost a third of the decoding of a large inventory page.
func readBody(r io.Reader) (*Node, error) {
	d := xml.NewDecoder(r)
	var stack []*Node
	var body *Node
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if body == nil {
				return nil, errors.New("no soap body in the answer")
			}
			return body, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && body == nil && t.Name.Local != "Body" {
				continue // the Envelope and Header around the Body
			}
			if body != nil && len(stack) == 0 {
				continue // past the Body
			}
			n := &Node{XMLName: t.Name}
			if len(t.Attr) > 0 {
				n.Attrs = slices.Clone(t.Attr)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Kids = append(p.Kids, n)
			} else {
				body = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(t)
			}
		}
	}
}

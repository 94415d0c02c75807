package vim

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"
)

// Values are escaped in requests: a password or a snapshot name with
// markup in it arrives as text.
func TestRequestEscapes(t *testing.T) {
	var b bytes.Buffer
	El("spec", Mor("_this", Ref{Type: `A"B`, Value: "x<y"}), Str("password", `p&<>"'`),
		Typed("selectSet", "TraversalSpec", Str("path", "view"))).write(&b)
	want := `<spec><_this type="A&#34;B">x&lt;y</_this><password>p&amp;&lt;&gt;&#34;&#39;</password>` +
		`<selectSet xsi:type="TraversalSpec"><path>view</path></selectSet></spec>`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// A fault's type comes from its detail's xsi:type (with or without a
// namespace prefix), else from the detail element's name.
func TestFaults(t *testing.T) {
	for body, want := range map[string]Fault{
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Cannot complete login due to an incorrect user name or password.</faultstring>` +
			`<detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault>`: {
			Name: "InvalidLogin", Message: "Cannot complete login due to an incorrect user name or password."},
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The session is not authenticated.</faultstring>` +
			`<detail><NotAuthenticatedFault xmlns="urn:vim25" xsi:type="vim25:NotAuthenticated"><object type="Folder">group-d1</object></NotAuthenticatedFault></detail></soapenv:Fault>`: {
			Name: "NotAuthenticated", Message: "The session is not authenticated."},
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>gone</faultstring><detail><ManagedObjectNotFoundFault xmlns="urn:vim25"/></detail></soapenv:Fault>`: {
			Name: "ManagedObjectNotFound", Message: "gone"},
	} {
		doc := `<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="` + xsiNS + `" xmlns:vim25="urn:vim25"><soapenv:Body>` + body + `</soapenv:Body></soapenv:Envelope>`
		var env struct {
			Body Node `xml:"Body"`
		}
		if err := xml.NewDecoder(strings.NewReader(doc)).Decode(&env); err != nil {
			t.Fatal(err)
		}
		if got := soapFault(env.Body.Child("Fault")); *got != want {
			t.Errorf("fault %+v, want %+v", *got, want)
		}
	}
}

// A task's error names its fault and says its message.
func TestMethodFault(t *testing.T) {
	doc := `<error xmlns:xsi="` + xsiNS + `"><fault xsi:type="FileSystemQuiesceFault"><faultMessage><message>freeze failed</message></faultMessage></fault></error>`
	var n Node
	if err := xml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	if f := MethodFault(&n); f.Name != "FileSystemQuiesceFault" || f.Message != "freeze failed" || f.Error() != "FileSystemQuiesceFault: freeze failed" {
		t.Errorf("%+v", f)
	}
	var missing *Node
	if missing.Child("x").Path("y", "z").Int() != 0 || missing.Ref() != (Ref{}) || missing.Has() {
		t.Error("a missing node does not read as empty")
	}
}

// readBody builds the tree xml.Unmarshal builds into a Node: names,
// attributes with their namespaces, text and children in order.
func TestReadBodyAsUnmarshal(t *testing.T) {
	doc := `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="` + xsiNS + `">` +
		`<soapenv:Header><x>ignored</x></soapenv:Header><soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>` +
		`<objects><obj type="VirtualMachine">vm-42</obj><propSet><name>config.hardware.device</name><val xsi:type="ArrayOfVirtualDevice">` +
		`<VirtualDevice xsi:type="VirtualDisk"><key>2000</key><capacityInBytes>4194304</capacityInBytes></VirtualDevice>` +
		`</val></propSet><propSet><name>name</name><val xsi:type="xsd:string">web &amp; db</val></propSet></objects>` +
		`<token>t-1</token></returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>`
	got, err := readBody(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Body Node `xml:"Body"`
	}
	if err := xml.Unmarshal([]byte(doc), &env); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, env.Body) {
		t.Errorf("readBody:\n%+v\nxml.Unmarshal:\n%+v", *got, env.Body)
	}
	ret := got.Path("RetrievePropertiesExResponse", "returnval")
	objs := objectsOf(ret.Children("objects"))
	if len(objs) != 1 || objs[0].Ref != (Ref{Type: "VirtualMachine", Value: "vm-42"}) || objs[0].Props["name"].String() != "web & db" ||
		objs[0].Props["config.hardware.device"].Child("VirtualDevice").Type() != "VirtualDisk" || ret.Child("token").String() != "t-1" {
		t.Errorf("objects read: %+v", objs)
	}
	if _, err := readBody(strings.NewReader(`<a/>`)); err == nil {
		t.Error("an answer without a body was read")
	}
}

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/testdata"
)

var update = flag.Bool("update", false, "rewrite the golden templates under testdata/apps")

// ShopIDs are the ids the golden template of the shop app (testdata/apps)
// is written with: tokens for what a launch gets from its account.
var ShopIDs = []string{"APP_ID", "SERVER_DB", "SERVER_APP", "SERVER_WEB", "AMI_DB", "AMI_APP", "AMI_WEB",
	"SUBNET_PROD", "SUBNET_TEST", "SG_DB", "SG_APP", "SG_WEB", "SG_TEST"}

// fakeIDs gives each token an id of its kind's shape, for inputs that are
// checked (a rightsizing CSV).
func fakeIDs() map[string]string {
	out := map[string]string{}
	for i, tok := range ShopIDs {
		prefix := map[string]string{"APP": "app-", "SERVER": "s-", "AMI": "ami-", "SUBNET": "subnet-", "SG": "sg-"}[strings.Split(tok, "_")[0]]
		out[tok] = prefix + strings.Repeat("0", 15) + string(rune('a'+i/10)) + string(rune('0'+i%10))
	}
	return out
}

// substitute replaces each token by its id; normalize does the reverse.
func substitute(s string, ids map[string]string) string {
	for tok, id := range ids {
		s = strings.ReplaceAll(s, tok, id)
	}
	return s
}

func normalize(b []byte, ids map[string]string) []byte {
	for tok, id := range ids {
		b = bytes.ReplaceAll(b, []byte(id), []byte(tok))
	}
	return b
}

// shopApp is the shop application as the end-to-end test configures it:
// db-01 in group "data", app-01 and web-01 in "front" after it; a test
// subnet and security group; db-01 with a private address and user data,
// web-01 with a public address; the rightsizing CSV of testdata/apps.
func shopApp(t *testing.T, ids map[string]string) (store.App, map[string]store.Server, map[string]awstarget.Image) {
	t.Helper()
	servers := map[string]store.Server{
		ids["SERVER_DB"]:  {ServerID: ids["SERVER_DB"], Name: "db-01", CPUs: 2, MemoryMiB: 4096},
		ids["SERVER_APP"]: {ServerID: ids["SERVER_APP"], Name: "app-01", CPUs: 4, MemoryMiB: 8192},
		ids["SERVER_WEB"]: {ServerID: ids["SERVER_WEB"], Name: "web-01", CPUs: 2, MemoryMiB: 2048},
	}
	a := store.App{AppID: ids["APP_ID"], Name: "shop", Groups: []store.ServerGroup{
		{GroupID: "group-data", Name: "data", ServerIDs: []string{ids["SERVER_DB"]}},
		{GroupID: "group-front", Name: "front", ServerIDs: []string{ids["SERVER_APP"], ids["SERVER_WEB"]}},
	}}
	pub := true
	lc, err := Configure(a, &store.LaunchConfig{
		Test: &store.TestLaunchConfig{Subnet: ids["SUBNET_TEST"], SecurityGroups: []string{ids["SG_TEST"]}, NameSuffix: "-test"},
		Groups: []store.GroupLaunch{
			{GroupID: "group-data", LaunchOrder: 1, Servers: []store.ServerLaunch{{ServerID: ids["SERVER_DB"], PrivateIP: "10.20.1.10",
				UserData: "#!/bin/sh\necho db ready > /var/tmp/rehost-ready\n"}}},
			{GroupID: "group-front", LaunchOrder: 2, Servers: []store.ServerLaunch{{ServerID: ids["SERVER_WEB"], AssociatePublicIP: &pub}}},
		}}, servers)
	if err != nil {
		t.Fatal(err)
	}
	a.Launch = lc
	rows, err := ParseRightsizing(strings.NewReader(substitute(string(testdata.File("apps/shop-rightsizing.csv")), ids)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Launch, _, err = Rightsize(context.Background(), a, servers, rows, nil); err != nil {
		t.Fatal(err)
	}
	amis := map[string]awstarget.Image{
		ids["SERVER_DB"]:  {ID: ids["AMI_DB"], State: "available", RootDevice: "/dev/sda1", Devices: []string{"/dev/sda1"}},
		ids["SERVER_APP"]: {ID: ids["AMI_APP"], State: "available", RootDevice: "/dev/sda1", Devices: []string{"/dev/sda1"}, Platform: "windows"},
		ids["SERVER_WEB"]: {ID: ids["AMI_WEB"], State: "available", RootDevice: "/dev/sda1", Devices: []string{"/dev/sda1", "/dev/sdb"}},
	}
	return a, servers, amis
}

func shopTemplate(t *testing.T, format string) []byte {
	t.Helper()
	ids := fakeIDs()
	a, servers, amis := shopApp(t, ids)
	names := map[string]string{}
	for id, s := range servers {
		names[id] = s.Name
	}
	if err := CheckLaunchConfig(a, names); err != nil {
		t.Fatal(err)
	}
	waits, err := LaunchOrder(a)
	if err != nil {
		t.Fatal(err)
	}
	ud := map[string]string{}
	for _, g := range a.Launch.Groups {
		for _, s := range g.Servers {
			ud[s.ServerID] = s.UserData
		}
	}
	in, _ := BuildInput(a, names, waits, amis, ud)
	b, err := Template(in, format)
	if err != nil {
		t.Fatal(err)
	}
	return normalize(b, ids)
}

// goldenPath is the fixture's file: tests run in the package's directory.
func goldenPath(name string) string { return filepath.Join("..", "..", "testdata", "apps", name) }

// The shop app's template is what the golden files hold, byte for byte,
// in JSON and YAML; the same input gives the same bytes every time.
func TestTemplateGolden(t *testing.T) {
	for _, c := range []struct{ format, file string }{{FormatJSON, "shop.template.json"}, {FormatYAML, "shop.template.yaml"}} {
		got := shopTemplate(t, c.format)
		if *update {
			if err := os.WriteFile(goldenPath(c.file), got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want := testdata.File("apps/" + c.file)
		if *update {
			want = got
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from testdata/apps/%s (go test ./connector/app -run TestTemplateGolden -update rewrites it):\n%s", c.format, c.file, got)
		}
		if again := shopTemplate(t, c.format); !bytes.Equal(again, got) {
			t.Errorf("%s: two renderings of one input differ", c.format)
		}
	}
}

// The template reads back through goformation — JSON and YAML to the same
// template — and goformation writes it out again unchanged.
func TestTemplateRoundTripsThroughGoformation(t *testing.T) {
	keep := &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: cloudformation.EncoderIntrinsics}
	js := testdata.File("apps/shop.template.json")
	fromJSON, err := goformation.ParseJSONWithOptions(js, keep)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := goformation.ParseYAMLWithOptions(testdata.File("apps/shop.template.yaml"), keep)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fromJSON.Resources); n != 7 {
		t.Errorf("%d resources, want 3 instances and 2 wait conditions with their handles", n)
	}
	web, err := fromJSON.GetEC2InstanceWithName("Web01")
	if err != nil {
		t.Fatal(err)
	}
	if len(web.AWSCloudFormationDependsOn) != 1 || web.AWSCloudFormationDependsOn[0] != "GroupDataReady" {
		t.Errorf("web-01 depends on %v, want the data group's wait condition", web.AWSCloudFormationDependsOn)
	}
	back, err := fromJSON.JSON()
	if err != nil {
		t.Fatal(err)
	}
	backYAML, err := fromYAML.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var orig, out, outYAML any
	for _, x := range []struct {
		b []byte
		v *any
	}{{js, &orig}, {back, &out}, {backYAML, &outYAML}} {
		if err := json.Unmarshal(x.b, x.v); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(orig, out) {
		t.Errorf("goformation wrote the JSON template back differently:\n%s", back)
	}
	if !reflect.DeepEqual(orig, outYAML) {
		t.Errorf("the YAML template reads as another template:\n%s", backYAML)
	}
}

// The rightsizing CSV's values are in the template.
func TestTemplateCarriesRightsizing(t *testing.T) {
	var tpl struct {
		Parameters map[string]struct{ Default string }
		Resources  map[string]struct {
			Properties struct {
				BlockDeviceMappings []struct {
					DeviceName string
					Ebs        struct{ VolumeType string }
				}
				NetworkInterfaces []struct {
					SubnetId any
					GroupSet []any
				}
				Tags []struct {
					Key   string
					Value any
				}
			}
		}
	}
	if err := json.Unmarshal(testdata.File("apps/shop.template.json"), &tpl); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ server, typ, volume, tier string }{{"Db01", "r5.large", "gp3", "db"}, {"App01", "t3.xlarge", "", "app"}, {"Web01", "t3.small", "gp2", "web"}} {
		if got := tpl.Parameters[c.server+"InstanceType"].Default; got != c.typ {
			t.Errorf("%s instance type %s, want %s", c.server, got, c.typ)
		}
		p := tpl.Resources[c.server].Properties
		if c.volume != "" && (len(p.BlockDeviceMappings) == 0 || p.BlockDeviceMappings[0].Ebs.VolumeType != c.volume) {
			t.Errorf("%s volumes %+v, want %s", c.server, p.BlockDeviceMappings, c.volume)
		}
		found := false
		for _, tg := range p.Tags {
			found = found || tg.Key == "tier" && tg.Value == c.tier
		}
		if !found {
			t.Errorf("%s tags %+v lack tier=%s", c.server, p.Tags, c.tier)
		}
		if sub, _ := json.Marshal(p.NetworkInterfaces[0].SubnetId); !strings.Contains(string(sub), "SUBNET_PROD") || !strings.Contains(string(sub), "SUBNET_TEST") {
			t.Errorf("%s subnet %s", c.server, sub)
		}
	}
	if gs, _ := json.Marshal(tpl.Resources["Web01"].Properties.NetworkInterfaces[0].GroupSet); !strings.Contains(string(gs), "SG_WEB") || !strings.Contains(string(gs), "SG_APP") {
		t.Errorf("web-01 security groups %s", gs)
	}
}
